"""``herl eval``: instruction-following benchmarks with the HiR protocol and test-time self-revision."""

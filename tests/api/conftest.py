"""Fixtures for the API tests; shared helpers live in api_support.py (a site-package named `tests`
exists in the venv, so test helpers are imported by their unique module names)."""

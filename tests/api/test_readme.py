"""The README's command examples name sub-commands and flags that exist (a renamed flag fails here)."""

from __future__ import annotations

import re
import shlex

from api_support import REPO

from herl.cli import build_parser


def test_every_herl_example_in_the_readme_parses() -> None:
    parser = build_parser()
    lines = [ln for ln in (REPO / "README.md").read_text().splitlines() if ln.startswith("herl ")]
    assert len(lines) >= 5
    for line in lines:
        argv = shlex.split(line.split("#", 1)[0])[1:]
        # Placeholders like DIR / job.yaml are fine: argparse checks names and arity, not paths.
        args = parser.parse_args(argv)
        assert getattr(args, "func", None) is not None, line


def test_readme_opens_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [ln.split("#")[0].strip() for ln in first_block.group(1).splitlines() if ln.strip()]
    assert commands == ["make demo", "make test"]
    make = (REPO / "Makefile").read_text()
    assert "manifests/samples/local-smollm2.yaml" in make and "pytest" in make
    assert "make test" in (REPO / ".ci" / "run").read_text()

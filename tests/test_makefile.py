"""The Makefile's checks can fail: no ``|| true``, formatting is part of ``make test``, no empty targets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKEFILE = REPO / "Makefile"


def _recipe(target: str) -> list[str]:
    """The commands ``make -n TARGET`` would run for TARGET itself (its prerequisites' lines dropped)."""
    if shutil.which("make") is None:
        pytest.fail("GNU make is not installed (the README's commands need it)")
    res = subprocess.run(
        ["make", "--no-print-directory", "-n", "-f", str(MAKEFILE), target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    setup = ["bash scripts/setup.sh"]  # every target depends on `setup`, which prints this first
    lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    assert lines[: len(setup)] == setup, lines
    # `test` also depends on `cluster-build` (the real control plane's binaries, cached) and on `images`
    # (the images tests/images runs; their tools first, a missing one fails).
    prerequisites = {
        "bash scripts/cluster/build.sh >/dev/null",
        "bash scripts/images/install-tools.sh",
        ".venv/bin/python scripts/images/build.py",
    }
    return [ln for ln in lines[len(setup) :] if ln not in prerequisites]


def test_lint_fails_on_findings() -> None:
    assert _recipe("lint") == [
        ".venv/bin/python -m ruff check .",
        ".venv/bin/python -m ruff format --check .",
    ]


def test_make_test_checks_formatting_after_lint() -> None:
    assert _recipe("test") == [
        ".venv/bin/python -m ruff check .",
        ".venv/bin/python -m ruff format --check .",
        ".venv/bin/herl generate --check",
        ".venv/bin/python scripts/cluster/gen_tools_mod.py --check",
        ".venv/bin/pytest -q",
    ]


def test_make_test_builds_the_images_it_runs() -> None:
    """tests/images/test_built_images.py runs dist/images/*.oci.tar: `make test` builds them first."""
    res = subprocess.run(
        ["make", "--no-print-directory", "-n", "-f", str(MAKEFILE), "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    lines = [ln.strip() for ln in res.stdout.splitlines()]
    tools, build = (
        lines.index("bash scripts/images/install-tools.sh"),
        lines.index(".venv/bin/python scripts/images/build.py"),
    )
    assert tools < build < lines.index(".venv/bin/pytest -q")


def test_no_check_is_neutralised() -> None:
    text = MAKEFILE.read_text()
    assert "|| true" not in text and "-$(" not in text  # `-cmd` would also ignore a failure
    assert not re.search(r"^\t-", text, re.M)


def test_every_phony_target_has_a_recipe() -> None:
    text = MAKEFILE.read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M)
    assert phony is not None
    for target in phony.group(1).split():
        rule = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
        assert rule is not None, f".PHONY target {target!r} has no rule with a recipe"

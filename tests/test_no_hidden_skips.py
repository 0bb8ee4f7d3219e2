"""No test skips itself: a missing module of ours, declared dependency or set-up tool must fail.

Our dependencies are declared (pyproject extras, scripts/setup.sh installs them and the tools), so a
skip could only hide a broken install. GPU-only tests are deselected by the ``gpu`` marker instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SKIPPING = {"importorskip", "skip", "skipif", "xfail"}


def skips_in(source: str) -> list[tuple[int, str]]:
    """(line, call) for every ``pytest.importorskip/skip/xfail`` call and ``pytest.mark.skip/skipif/xfail``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in SKIPPING:
            base = node.value
            chain = []
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id == "pytest":
                found.append((node.lineno, ".".join(["pytest", *reversed(chain), node.attr])))
    return sorted(found)


def test_no_test_skips_itself() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 40
    found = [
        f"{p.relative_to(TESTS)}:{line}: {call}" for p in files for line, call in skips_in(p.read_text())
    ]
    assert found == [], "\n".join(found)


def test_the_scan_sees_every_form() -> None:
    src = (
        "import pytest\n"
        "verl = pytest.importorskip('verl')\n"
        "@pytest.mark.skipif(True, reason='x')\n"
        "def test_a():\n"
        "    pytest.skip('no tool')\n"
        "@pytest.mark.skip\n"
        "def test_b():\n"
        "    pytest.xfail('later')\n"
    )
    assert [call for _, call in skips_in(src)] == [
        "pytest.importorskip",
        "pytest.mark.skipif",
        "pytest.skip",
        "pytest.mark.skip",
        "pytest.xfail",
    ]

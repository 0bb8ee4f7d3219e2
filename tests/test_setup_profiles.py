"""scripts/setup.sh's two profiles: `make demo` installs only the local engine, `make test` everything; an
unknown profile is refused; a CPU torch wheel on disk is used when there is one, and its absence is no error."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_the_demo_profile_installs_the_local_engine_only() -> None:
    local = " ".join(_extras()["local"])
    for heavy in ("verl", "kopf", "kmock", "pytest", "trl", "vllm"):
        assert heavy not in local, heavy
    for needed in ("torch", "transformers", "lm-eval", "gguf", "accelerate", "matplotlib"):
        assert needed in local, needed
    assert _extras()["train"] == ["herl[local]", "verl[verl-core]==0.9.1"]
    text = SETUP.read_text()
    assert 'demo) extras="local"; assets="nltk"' in text
    assert 'full) extras="operator,train,dev,bench"; assets="nltk helm eval-data"' in text


def test_make_demo_sets_up_the_demo_profile_then_trains() -> None:
    res = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == [
        "bash scripts/setup.sh demo",
        ".venv/bin/herl train manifests/samples/local-smollm2.yaml --out runs/demo",
    ]


def test_unknown_profile_is_refused_before_any_work(tmp_path: Path) -> None:
    res = subprocess.run(
        ["bash", str(SETUP), "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "VENV": str(tmp_path / "venv")},
    )
    assert res.returncode == 2 and "unknown profile 'nope' (allowed: full, demo)" in res.stderr
    assert not (tmp_path / "venv").exists()


def _cpu_torch_wheel(find_links: str) -> subprocess.CompletedProcess[str]:
    """Run setup.sh's own cpu_torch_wheel under `set -euo pipefail`, as the script does."""
    script = (
        "set -euo pipefail\n"
        f'eval "$(sed -n "/^cpu_torch_wheel()/,/^}}/p" {SETUP})"\n'
        'found=$(cpu_torch_wheel)\necho "[$found]"\n'
    )
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PIP_FIND_LINKS": find_links},
    )


def test_cpu_torch_wheel_on_disk_or_not(tmp_path: Path) -> None:
    none = _cpu_torch_wheel(str(tmp_path))
    assert none.returncode == 0 and none.stdout == "[]\n", none.stderr
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"")
    found = _cpu_torch_wheel(f"/nonexistent {tmp_path}")
    assert found.returncode == 0 and found.stdout == f"[{wheel}]\n", found.stderr

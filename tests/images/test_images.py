"""The container images' Dockerfiles: hadolint, and what they install exists and is the right thing.

These checks pin what a build does to the repository (extras, modules, entry points, assets, users,
ports) so a rename breaks CI, not a cluster. The operator and CPU trainer images are also built and run
(test_built_images.py); the GPU trainer's base cannot be pulled here, so it is only checked statically.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from herl import assets, chart, images

REPO = chart.REPO
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
HADOLINT = Path(sys.executable).parent / "hadolint"
IMAGES = {name: REPO / "images" / name / "Dockerfile" for name in ("operator", "trainer", "trainer-cpu")}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    ins = instructions(path)
    last_from = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    return ins[last_from:]


def installed_extras(path: Path) -> set[str]:
    """Extras of herl that `pip install` lines name: `.[train]`, `"$(ls /wheels/herl-*.whl)[operator]"`."""
    found: set[str] = set()
    for keyword, args in instructions(path):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            if re.search(r"\bpip install\b", command):
                for spec in re.findall(r"(?:\.|herl[^\s\"']*|\))\[([a-z0-9_,-]+)\]", command):
                    found.update(spec.split(","))
    return found


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hadolint_clean(name: str) -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--format", "json", str(IMAGES[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout or "[]") == []


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_installs_only_existing_extras(name: str) -> None:
    extras = installed_extras(IMAGES[name])
    assert extras, f"{name}: no herl extra installed"
    assert extras <= EXTRAS, f"{name}: unknown extras {extras - EXTRAS}"


def test_operator_image_installs_the_operator_extra_only() -> None:
    path = IMAGES["operator"]
    assert installed_extras(path) == {"operator"}
    text = "\n".join(f"{k} {a}" for k, a in instructions(path))  # instructions only, not comments
    # No trainer stack, no GPU stack, no compilers in the operator image.
    for forbidden in ("[train", "[gpu", "torch", "vllm", "verl", "build-essential", "gcc", "apt-get install"):
        assert forbidden not in text, forbidden
    assert "--only-binary=:all:" in text


def test_operator_image_entry_point_exists() -> None:
    final = final_stage(IMAGES["operator"])
    entry = [json.loads(a) for k, a in final if k == "ENTRYPOINT"]
    assert entry == [["python", "-m", "herl_operator"]]
    # herl_operator is the packaged name of operator/ (setup.py), and it is runnable with -m.
    assert '"herl_operator": "operator"' in (REPO / "setup.py").read_text()
    assert (REPO / "operator" / "__main__.py").exists()
    assert importlib.util.find_spec("herl_operator.__main__") is not None


def test_operator_image_matches_the_chart() -> None:
    final = final_stage(IMAGES["operator"])
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    user = [a for k, a in final if k == "USER"]
    assert user == [f"{values['securityContext']['runAsUser']}:{values['securityContext']['runAsGroup']}"]
    exposed = {int(p) for k, a in final if k == "EXPOSE" for p in a.split()}
    assert exposed == {values["operator"]["metricsPort"], values["operator"]["healthPort"]}
    env = " ".join(a for k, a in final if k == "ENV")
    # Read-only root file system: no bytecode writes, HOME on the chart's /tmp emptyDir.
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env


def test_python_base_is_a_pinned_slim_tag() -> None:
    args = [a for k, a in instructions(IMAGES["operator"]) if k == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert args == ["PYTHON_IMAGE=python:3.11-slim"]
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_trainer_image_installs_train_and_offline_assets() -> None:
    path = IMAGES["trainer"]
    assert installed_extras(path) == {"train"}  # vllm / flash-attn come from the veRL base image
    run = " && ".join(a for k, a in instructions(path) if k == "RUN")
    # Every asset the image fetches is one herl.assets knows.
    fetch = re.search(r"python -m herl\.assets fetch ([a-z0-9 -]+?)\s*&&", run)
    assert fetch, "trainer does not fetch offline assets"
    names = fetch.group(1).split()
    assert {"nltk", "eval-data"} <= set(names) and set(names) <= set(assets.FETCHERS)
    # The warm-up it runs exists (it loads every IF checker offline).
    from herl.rewards import checkers

    assert callable(checkers.warm_up) and "checkers.warm_up()" in run
    # The console script it calls is declared.
    assert re.search(r"\bherl --help\b", run) and PYPROJECT["project"]["scripts"]["herl"] == "herl.cli:main"
    # The GPU stack of the base is held fixed while herl[train] installs.
    assert "--constraint /opt/herl/gpu-stack-constraints.txt" in run


def test_trainer_env_points_at_the_baked_assets(monkeypatch) -> None:
    env: dict[str, str] = {}
    for keyword, args in instructions(IMAGES["trainer"]):
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    assert env["HERL_CACHE"].startswith("/opt/")
    # herl.assets puts NLTK data under $HERL_CACHE/nltk_data: NLTK_DATA must be that folder.
    monkeypatch.setenv("HERL_CACHE", env["HERL_CACHE"])
    assert Path(env["NLTK_DATA"]) == assets.cache_root() / "nltk_data"


def test_trainer_base_image_is_a_veRL_vllm_tag() -> None:
    args = [a for k, a in instructions(IMAGES["trainer"]) if k == "ARG" and a.startswith("VERL_IMAGE=")]
    assert args == ["VERL_IMAGE=verlai/verl:vllm024.dev2"]
    # veRL itself comes from herl[train], pinned to the version the plugin is written for.
    assert "verl[verl-core]==0.9.1" in PYPROJECT["project"]["optional-dependencies"]["train"]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_runs_as_non_root(name: str) -> None:
    users = [a for k, a in final_stage(IMAGES[name]) if k == "USER"]
    assert users, f"{name}: no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_copied_sources_exist(name: str) -> None:
    """The build context is the repository root (Makefile `images`); every COPY source must exist."""
    for keyword, args in instructions(IMAGES[name]):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        for src in args.split()[:-1]:
            assert (REPO / src).exists(), f"{name}: COPY {src} missing"
    # `make images` builds from herl/images.py's Dockerfile paths: this one is among them.
    assert f"images/{name}/Dockerfile" in {i.dockerfile for i in images.ALL}


def test_trainer_cpu_image_installs_local_only_and_its_assets() -> None:
    path = IMAGES["trainer-cpu"]
    # local: the engine and rewards; ray: Ray with its dashboard, what a KubeRay head runs.
    assert installed_extras(path) == {"local", "ray"}
    assert [d for d in PYPROJECT["project"]["optional-dependencies"]["ray"] if d.startswith("ray[default]")]
    local = PYPROJECT["project"]["optional-dependencies"]["local"]
    assert not [d for d in local if d.startswith(("verl", "vllm", "flash"))], local
    # herl[train] is herl[local] plus veRL: the CPU image runs the same local engine as the GPU one.
    assert set(PYPROJECT["project"]["optional-dependencies"]["train"]) == {
        "herl[local]",
        "verl[verl-core]==0.9.1",
    }
    run = " && ".join(a for k, a in instructions(path) if k == "RUN")
    fetch = re.search(r"python -m herl\.assets fetch ([a-z0-9 -]+?)\s*&&", run)
    assert fetch and set(fetch.group(1).split()) == {"nltk", "eval-data"}
    assert "checkers.warm_up()" in run
    # torch comes from the index the build names (PyTorch's CPU index by default), pinned twice.
    assert '--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"' in run
    assert '[local,ray]" "torch==${TORCH_VERSION}"' in run
    args = [a for k, a in instructions(path) if k == "ARG"]
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in args


def test_trainer_cpu_env_points_at_the_baked_assets(monkeypatch) -> None:
    final = final_stage(IMAGES["trainer-cpu"])
    env = dict(item.partition("=")[::2] for k, a in final if k == "ENV" for item in shlex.split(a))
    monkeypatch.setenv("HERL_CACHE", env["HERL_CACHE"])
    assert Path(env["NLTK_DATA"]) == assets.cache_root() / "nltk_data"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # The GPU trainer's user, so one pod securityContext fits both trainer images.
    assert [a for k, a in final if k == "USER"] == [
        a for k, a in final_stage(IMAGES["trainer"]) if k == "USER"
    ]


@pytest.mark.parametrize("name", ["operator", "trainer-cpu"])
def test_build_stage_keeps_operator_folder_off_sys_path(name: str) -> None:
    """The build stage's WORKDIR holds operator/: without PYTHONSAFEPATH, `python -m venv` run there
    imports it as the standard library's `operator` and fails (found by the first real build)."""
    ins = instructions(IMAGES[name])
    first_from = next(i for i, (k, _) in enumerate(ins) if k == "FROM")
    workdir = next(i for i, (k, _) in enumerate(ins) if k == "WORKDIR" and i > first_from)
    env_before = " ".join(a for k, a in ins[first_from:workdir] if k == "ENV")
    assert "PYTHONSAFEPATH=1" in env_before

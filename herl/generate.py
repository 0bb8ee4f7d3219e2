"""Every derived file in the repository, and the one command that writes or checks them.

``herl generate`` rewrites them; ``herl generate --check`` (run by `make test`) fails when a checked-in
copy differs from what its source produces, naming the file. Sources: the HeRLJob model (CRDs, API
docs), the metrics catalogue (metrics docs, dashboards, alerts) and the Helm chart (install.yaml).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _crd() -> dict[str, str]:
    from herl.api.crd import render_crd_yaml

    text = render_crd_yaml()
    return {
        "manifests/crds/herl.dev_herljobs.yaml": text,
        "charts/herl-operator/crds/herl.dev_herljobs.yaml": text,
    }


def _api_docs() -> dict[str, str]:
    from herl.api.docs import render_api_docs

    return {"docs/api.md": render_api_docs()}


def _metrics() -> dict[str, str]:
    from herl.metrics import alerts, dashboards, docs_text

    files = {"docs/metrics.md": docs_text.render_markdown()}
    for fname, build in dashboards.DASHBOARDS.items():
        files[f"manifests/dashboards/{fname}"] = dashboards.render(build())
    files["manifests/dashboards/kustomization.yaml"] = dashboards.kustomization()
    for fname, render in alerts.RENDERED.items():
        files[f"manifests/alerts/{fname}"] = render()
    return files


def _chart() -> dict[str, str]:
    from herl import chart

    files: dict[str, str] = {}
    for produce in chart.PRODUCERS:  # rbac rules, monitoring copies, then install.yaml (renders the chart)
        files.update(produce())
    return files


# Each producer returns {repo-relative path: exact file content}.
PRODUCERS: list[Callable[[], dict[str, str]]] = [_crd, _api_docs, _metrics, _chart]


def generated_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for produce in PRODUCERS:
        files.update(produce())
    return files


def write_all(root: Path = REPO) -> list[str]:
    changed = []
    for rel, text in generated_files().items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(rel)
    return changed


def check_all(root: Path = REPO) -> list[str]:
    """Return one message per drifted file (empty when everything is in sync)."""
    problems = []
    for rel, text in generated_files().items():
        path = root / rel
        if not path.exists():
            problems.append(f"{rel}: missing (run `herl generate`)")
            continue
        current = path.read_text()
        if current != text:
            diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), rel, "generated", n=0))
            problems.append(f"{rel}: differs from its source (run `herl generate`):\n" + "\n".join(diff[:20]))
    return problems

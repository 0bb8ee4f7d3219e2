"""Shared renders of the herl-operator chart with the real helm binary (herl.assets.helm_binary).

Each matrix case is rendered once per test session (helm template takes ~0.3 s here) and shared by the
schema, RBAC, security and monitor tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import MATRIX

from herl import chart


@pytest.fixture(scope="session")
def renders() -> dict[str, list[dict[str, Any]]]:
    """Every matrix case rendered (CRDs included) and parsed into documents."""
    return {
        name: chart.documents(chart.render(values, api_versions=apis, include_crds=True))
        for name, (values, apis) in MATRIX.items()
    }

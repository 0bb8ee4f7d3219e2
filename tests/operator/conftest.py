"""Fixtures for the operator tests (helpers live in op_helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from op_helpers import declare_resources


@pytest.fixture()
async def api(kmock: Any) -> AsyncIterator[Any]:
    """A driver client for the test's own calls (plays the user, KubeRay and Kueue over HTTP)."""
    from herl_operator.kube import KubeClient

    declare_resources(kmock)
    client = KubeClient(str(kmock.url))
    yield client
    await client.close()

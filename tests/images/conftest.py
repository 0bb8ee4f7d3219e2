"""Fixtures of the image tests: one working container per built image, shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from image_support import Container, open_container

from herl import images


@pytest.fixture(scope="module")
def operator_container() -> Iterator[Container]:
    yield from open_container(images.OPERATOR)


@pytest.fixture(scope="module")
def trainer_cpu_container() -> Iterator[Container]:
    yield from open_container(images.TRAINER_CPU)

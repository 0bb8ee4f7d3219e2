"""HeRL as a veRL 0.9.1 plugin: loaded by ``import verl`` through the ``verl.plugins`` entry point.

veRL imports every ``verl.plugins`` entry point at the end of ``verl/__init__.py``, in every process
(driver, TaskRunner, Ray workers, rollout servers), and swallows import errors at DEBUG level. So
this module must import quickly and must not fail:

- the policy loss ``herl_mixpolicy`` is registered at once (it only needs ``core_algos``);
- the trainer ``herl_sync`` (a ``@register_trainer`` subclass of the v1 sync trainer) is registered
  lazily, when ``verl.trainer.ppo.v1`` is first imported (only the TaskRunner does that). Importing
  the v1 trainer here would add seconds and Ray/TransferQueue imports to every rollout process.

``VERL_USE_EXTERNAL_PLUGINS=none`` (veRL's switch) turns all of this off.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import types
from typing import Any

log = logging.getLogger(__name__)

TRAINER_MODE = "herl_sync"
"""``trainer.v1.trainer_mode`` value of the HeRL trainer."""

_V1_PACKAGE = "verl.trainer.ppo.v1"


def register_loss() -> bool:
    """Register the policy loss; False (logged) when veRL's core_algos cannot be imported here."""
    try:
        from herl.verl_plugin.loss import register

        register()
        return True
    except Exception:  # never break `import verl` in a worker
        log.warning("herl: could not register the herl_mixpolicy policy loss", exc_info=True)
        return False


def register_trainer() -> bool:
    """Register ``herl_sync`` with veRL's v1 trainer registry (idempotent; the trainer module owns it)."""
    try:
        from herl.verl_plugin.trainer import register

        register()
        return True
    except Exception:
        log.warning("herl: could not register the %s trainer", TRAINER_MODE, exc_info=True)
        return False


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Meta-path finder that runs :func:`register_trainer` right after ``verl.trainer.ppo.v1`` loads.

    It finds nothing itself: it asks the other finders for the real spec and wraps its loader's
    ``exec_module``, so the package is imported exactly as usual, then our trainer is registered.
    """

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _V1_PACKAGE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                loader = spec.loader
                original = loader.exec_module

                def exec_module(module: types.ModuleType, _original: Any = original) -> None:
                    _original(module)
                    _uninstall_hook()
                    register_trainer()

                loader.exec_module = exec_module  # type: ignore[method-assign]
                return spec
        return None


_HOOK = _RegisterAfterImport()


def _uninstall_hook() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def install() -> None:
    """Everything the entry point does: register the loss now and the trainer when v1 loads."""
    register_loss()
    if _V1_PACKAGE in sys.modules:
        register_trainer()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


install()

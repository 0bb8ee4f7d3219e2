"""Republish veRL's step metrics to Prometheus without forking veRL.

veRL 0.9.1's ``Tracking`` has a fixed backend list, and the v1 trainer builds its own ``Tracking`` in
``fit()`` and calls ``self.logger.log(data=metrics, step=global_steps)`` once per step (and for
validation). Wrapping ``Tracking.log`` at class level is the one hook that sees exactly that dict in
whichever process runs the loop, for any trainer class and any configured backends. The wrapper
calls the original first, then :func:`herl.metrics.publish_step`; a metrics failure is logged, never
raised into training.

The veRL plugin calls :func:`install_tracking_hook` once at import (plugins are imported in every
process; the hook does nothing until a Tracking logs). A trainer subclass may instead call
``herl.metrics.publish_step(metrics, step)`` itself and skip this module.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

_MARK = "__herl_metrics_hook__"


def install_tracking_hook() -> bool:
    """Wrap ``verl.utils.tracking.Tracking.log`` (idempotent). Returns False when veRL is missing."""
    try:
        from verl.utils.tracking import Tracking
    except ImportError:
        return False
    original = Tracking.log
    if getattr(original, _MARK, False):
        return True

    @functools.wraps(original)
    def log_and_publish(self: Any, data: dict[str, Any], step: int, backend: Any = None) -> Any:
        result = original(self, data=data, step=step, backend=backend)
        if backend is None:  # a backend-filtered call is a re-log of a subset, not a new step
            try:
                from herl.metrics import publish_step

                publish_step(data, step)
            except Exception:  # a metrics failure must never stop training
                log.exception("herl metrics: publish_step failed at step %s", step)
        return result

    setattr(log_and_publish, _MARK, True)
    log_and_publish.__wrapped_original__ = original  # type: ignore[attr-defined]
    Tracking.log = log_and_publish  # type: ignore[method-assign]
    return True


def uninstall_tracking_hook() -> None:
    """Restore the original ``Tracking.log`` (tests)."""
    try:
        from verl.utils.tracking import Tracking
    except ImportError:
        return
    original = getattr(Tracking.log, "__wrapped_original__", None)
    if original is not None:
        Tracking.log = original  # type: ignore[method-assign]

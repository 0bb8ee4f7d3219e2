"""veRL's PPO main, with one change: the TaskRunner (which runs the training loop and so publishes the
step metrics) is pinned to the Ray head.

Why: the trainer's Prometheus endpoint is the ``herl-metrics`` port of the head pod — the one pod with a
stable Service, a declared port and a PodMonitor (docs/metrics.md). veRL's own ``main_ppo`` lets Ray
place the TaskRunner on any node, so its metrics could land where nothing scrapes. We call veRL's own
functions (``run_ppo``, ``validate_config``) and pass a pinned TaskRunner class; nothing is copied.
Limitation: veRL's nsys profiling branch re-applies ``.options`` to the runner class and is not
supported through this entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import verl.trainer

from herl.metrics.cluster import head_pinning_options

CONFIG_DIR = str(Path(verl.trainer.__file__).resolve().parent / "config")


def task_runner_class() -> Any:
    """veRL's v1 TaskRunner, scheduled on the Ray head."""
    from verl.trainer.main_ppo import TaskRunnerV1

    return TaskRunnerV1.options(**head_pinning_options())


@hydra.main(config_path=CONFIG_DIR, config_name="ppo_trainer", version_base=None)
def main(config: Any) -> None:
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    validate_config(
        config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )
    if not config.trainer.use_v1:
        raise SystemExit("herl: the HeRL trainer needs veRL's v1 trainer (trainer.use_v1=true)")
    run_ppo(config, task_runner_class=task_runner_class())


if __name__ == "__main__":
    main()

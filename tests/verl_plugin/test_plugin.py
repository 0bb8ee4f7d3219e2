"""The plugin loads through veRL's real entry point and registers the trainer lazily (fresh processes)."""

from __future__ import annotations

import subprocess
import sys

import verl  # noqa: F401  (a declared test dependency: missing, it must fail here, not skip)


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_trainer_registered_when_v1_is_imported():
    code = (
        "import sys, verl\n"
        "assert 'verl.trainer.ppo.v1' not in sys.modules  # import verl stays light\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "cls = get_trainer_cls('herl_sync')\n"
        "from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync\n"
        "assert issubclass(cls, PPOTrainerSync)\n"
        "print(cls.__module__ + '.' + cls.__name__)\n"
    )
    assert _run(code) == "herl.verl_plugin.trainer.HeRLTrainerSync"


def test_trainer_registered_when_our_trainer_module_imports_v1_first():
    """Importing herl.verl_plugin.trainer first makes the v1 hook fire mid-import; it must still register."""
    code = (
        "import herl.verl_plugin.trainer as t\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "print(get_trainer_cls('herl_sync') is t.HeRLTrainerSync)\n"
    )
    assert _run(code) == "True"


def test_plugins_off_switch_is_respected():
    code = (
        "import os; os.environ['VERL_USE_EXTERNAL_PLUGINS'] = 'none'\n"
        "import verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "print('herl_mixpolicy' in core_algos.POLICY_LOSS_REGISTRY)\n"
    )
    assert _run(code) == "False"


def test_settings_roundtrip_defaults():
    from herl.core import HindsightConfig
    from herl.verl_plugin.settings import hindsight_config_from_verl

    assert hindsight_config_from_verl({}) == HindsightConfig(revision_temperature=0.3, revision_top_p=1.0)

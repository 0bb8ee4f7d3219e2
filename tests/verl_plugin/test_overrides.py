"""HeRLJob → veRL overrides: golden values of the released launch scripts (research note §1.10),
custom specs, verlOverrides order, and hostile strings (one argv element each, never a shell)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from herl.api.model import HeRLJob
from herl.verl_plugin.overrides import hydra_quote, hydra_value, job_to_verl_overrides, reward_function_path

JUDGE = {"endpoint": "https://judge.example/v1"}


def _job(spec: dict, name: str = "run-1", namespace: str = "ml") -> HeRLJob:
    base = {
        "model": {"path": "/models/qwen"},
        "data": {"train": "/data/train.parquet", "val": "/data/val.parquet"},
    }
    merged = {**base, **spec}
    return HeRLJob.model_validate(
        {
            "apiVersion": "herl.dev/v1alpha1",
            "kind": "HeRLJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": merged,
        }
    )


def _parse(overrides: list[str]) -> dict[str, object]:
    """Parse with Hydra's own override parser (what veRL's @hydra.main does)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return {("+" if o.is_add() else "") + o.key_or_group: o.value() for o in parsed}


# Released launch-script values, research note §1.10 (IF column | medicine column).
COMMON = {
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_in_reward": False,
    "actor_rollout_ref.rollout.n": 8,
    "data.train_batch_size": 64,
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 16,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "actor_rollout_ref.actor.optim.clip_grad": 1.0,
    "actor_rollout_ref.actor.ppo_epochs": 1,
    "actor_rollout_ref.actor.use_kl_loss": True,
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.actor.entropy_coeff": 0.0,
    "actor_rollout_ref.actor.clip_ratio": 0.2,
    "actor_rollout_ref.actor.clip_ratio_c": 3.0,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "actor_rollout_ref.actor.policy_loss.loss_mode": "herl_mixpolicy",
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.top_p": 1.0,
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 2,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.3,
    "actor_rollout_ref.rollout.name": "vllm",
    "trainer.n_gpus_per_node": 4,
    "trainer.nnodes": 1,
    "trainer.save_freq": 40,
    "trainer.test_freq": 5,
    "trainer.v1.trainer_mode": "herl_sync",
    "trainer.resume_mode": "auto",
    "+herl.hindsight.enabled": True,
    "+herl.hindsight.threshold": 1.0,
    "+herl.hindsight.candidate_limit": 16,
    "+herl.hindsight.revisions_per_candidate": 1,
    "+herl.hindsight.bonus_enabled": True,
    "+herl.hindsight.bonus_alpha": 0.05,
    "+herl.hindsight.train_under": "hindsight",
    "+herl.hindsight.incorporation": "replace",
    "+herl.hindsight.fallback": "duplicate-best",
    "+herl.hindsight.prompt_template": "constraint",
    "+herl.hindsight.chat_template": False,
    # released quirks: the sync rollout ignored rewrite_he.temperature/response_length; unseeded slot RNG
    "+herl.revision.use_rollout_sampling": True,
    "+herl.revision.temperature": None,
    "+herl.revision.max_tokens": None,
    "+herl.hindsight.seeded_slots": False,
}
IF = {
    "actor_rollout_ref.actor.ppo_mini_batch_size": 32,
    "data.max_prompt_length": 6144,
    "data.max_response_length": 2048,
    "actor_rollout_ref.actor.kl_loss_coef": 0.0,
    "+herl.hindsight.gamma": 1.0,
    "trainer.total_epochs": 6,
    "+reward.custom_reward_function.reward_kwargs.reward_type": "instruction-following",
}
MEDICAL = {
    "actor_rollout_ref.actor.ppo_mini_batch_size": 16,
    "data.max_prompt_length": 4096,
    "data.max_response_length": 4096,
    "actor_rollout_ref.actor.kl_loss_coef": 0.001,
    "+herl.hindsight.gamma": 0.1,
    "trainer.total_epochs": 3,
    "+reward.custom_reward_function.reward_kwargs.reward_type": "rubric-judge",
    "+reward.custom_reward_function.reward_kwargs.model": "gpt-4o-mini",
    "+reward.custom_reward_function.reward_kwargs.temperature": 0.1,
    "+reward.custom_reward_function.reward_kwargs.max_tokens": 4096,
    "+reward.custom_reward_function.reward_kwargs.concurrency": 512,
    "+reward.custom_reward_function.reward_kwargs.timeout_s": 60.0,
    "+reward.custom_reward_function.reward_kwargs.max_retries": 2,
    "+reward.custom_reward_function.reward_kwargs.backoff_base_s": 0.5,
    "+reward.custom_reward_function.reward_kwargs.pitfall_policy": "clamp",
    "+reward.custom_reward_function.reward_kwargs.base_url": "https://judge.example/v1",
}


@pytest.mark.parametrize(
    ("preset", "expected"), [("official-if", {**COMMON, **IF}), ("official-medical", {**COMMON, **MEDICAL})]
)
def test_official_presets_match_released_scripts(preset, expected):
    spec: dict = {"preset": preset}
    if preset == "official-medical":
        spec["reward"] = {"judge": JUDGE}
    got = _parse(job_to_verl_overrides(_job(spec)))
    for key, value in expected.items():
        assert key in got, key
        if isinstance(value, float):
            assert got[key] == pytest.approx(value), key
        else:
            assert got[key] == value, key
    assert got["reward.custom_reward_function.path"] == reward_function_path()
    assert Path(str(got["reward.custom_reward_function.path"])).is_file()
    assert got["reward.custom_reward_function.name"] == "compute_score"


def test_official_if_full_golden_list():
    """The exact argv (order included) for official-if; a change here is a behaviour change."""
    ov = job_to_verl_overrides(_job({"preset": "official-if"}), checkpoint_dir="/ck")
    golden = Path(__file__).with_name("golden_official_if.txt").read_text().splitlines()
    golden = [line.replace("@REWARD_PATH@", reward_function_path()) for line in golden]
    assert ov == golden


def test_custom_spec_fixes_quirks_and_keeps_user_values():
    job = _job(
        {
            "algorithm": {
                "groupSize": 4,
                "learningRate": 3e-6,
                "totalSteps": 100,
                "hindsight": {
                    "gamma": 0.5,
                    "revision": {"temperature": 0.7, "maxTokens": 512},
                    "incorporation": "append",
                    "trainUnder": "instruction",
                },
            },
            "resources": {"workers": 2, "gpusPerWorker": 8, "tensorParallel": 4},
            "data": {"train": "/d/t.parquet", "maxPromptLength": 8192},
        }
    )
    got = _parse(job_to_verl_overrides(job))
    assert got["actor_rollout_ref.rollout.n"] == 4
    assert got["actor_rollout_ref.actor.optim.lr"] == pytest.approx(3e-6)
    assert got["trainer.total_training_steps"] == 100
    assert got["+herl.revision.use_rollout_sampling"] is False
    assert got["+herl.revision.temperature"] == pytest.approx(0.7)
    assert got["+herl.revision.max_tokens"] == 512
    assert got["+herl.hindsight.seeded_slots"] is True  # our default fixes the unseeded draw
    assert got["+herl.hindsight.incorporation"] == "append"
    assert got["+herl.hindsight.train_under"] == "instruction"
    assert got["+herl.hindsight.gamma"] == pytest.approx(0.5)
    assert (got["trainer.nnodes"], got["trainer.n_gpus_per_node"]) == (2, 8)
    assert got["actor_rollout_ref.rollout.tensor_model_parallel_size"] == 4
    # no val file: validation off, val_files falls back to train (veRL always builds a val loader)
    assert got["trainer.test_freq"] == -1 and got["trainer.val_before_train"] is False
    assert got["data.val_files"] == "/d/t.parquet"


def test_hindsight_disabled_is_the_grpo_baseline():
    got = _parse(job_to_verl_overrides(_job({"algorithm": {"hindsight": {"enabled": False}}})))
    assert got["actor_rollout_ref.actor.policy_loss.loss_mode"] == "vanilla"
    assert got["trainer.v1.trainer_mode"] == "sync"


def test_verl_overrides_are_appended_verbatim_after_ours():
    extra = ["trainer.save_freq=7", "+actor_rollout_ref.actor.foo=bar", "~trainer.logger"]
    ov = job_to_verl_overrides(_job({"verlOverrides": extra}))
    assert ov[-3:] == extra
    assert ov.index("trainer.save_freq=40") < ov.index("trainer.save_freq=7")


HOSTILE = "/data/a,b c'd\"e${oc.env:HOME}[0]{x:1}\\;$(rm -rf /)`x`|&>"


def test_hostile_path_is_one_literal_argv_element(tmp_path, monkeypatch):
    """A path full of Hydra and shell metacharacters reaches veRL as itself, as a single argv element."""
    import herl.train as train

    path = HOSTILE.replace(" ", "_")  # the API forbids whitespace in paths
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "herl.dev/v1alpha1",
                "kind": "HeRLJob",
                "metadata": {"name": "h"},
                "spec": {"model": {"path": path}, "data": {"train": path}},
            }
        )
    )
    captured = {}

    def fake_execv(exe, argv):
        captured["exe"], captured["argv"] = exe, argv
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.setenv("HERL_CHECKPOINT_DIR", "/ck/dir")
    with pytest.raises(SystemExit):
        train.main(["--job", str(job_file)])
    argv = captured["argv"]
    assert argv[:3] == [captured["exe"], "-m", "herl.verl_plugin.launch"]
    items = [a for a in argv if a.startswith("actor_rollout_ref.model.path=")]
    assert len(items) == 1
    assert _resolve(items[0]) == path  # what veRL reads after Hydra parsing and OmegaConf resolution
    assert "trainer.default_local_dir='/ck/dir'" in argv


def _resolve(override: str) -> object:
    """Parse one override with Hydra, then resolve it with OmegaConf as veRL will read it."""
    from omegaconf import OmegaConf

    value = _parse([override])
    ((_key, v),) = value.items()
    return OmegaConf.create({"x": v}).x


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_hydra_quote_round_trips_any_text(text):
    assert _resolve(f"k={hydra_quote(text)}") == text


@pytest.mark.parametrize("value", ["null", "true", "1e-6", "42", "a,b", "x y", "", "s3://b/k", "${x}"])
def test_strings_that_look_special_stay_strings(value):
    assert _resolve(f"k={hydra_value(value)}") == value


def test_dry_run_prints_overrides(tmp_path, capsys):
    import herl.train as train

    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "herl.dev/v1alpha1",
                "kind": "HeRLJob",
                "metadata": {"name": "d"},
                "spec": {"preset": "official-if", "model": {"path": "/m"}, "data": {"train": "/t.parquet"}},
            }
        )
    )
    assert train.main(["--job", str(job_file), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "actor_rollout_ref.actor.policy_loss.loss_mode=herl_mixpolicy" in lines
    assert lines[0].startswith("algorithm.adv_estimator=")


def test_invalid_job_exits_2(tmp_path, capsys):
    import herl.train as train

    job_file = tmp_path / "job.yaml"
    job_file.write_text("apiVersion: herl.dev/v1alpha1\nkind: HeRLJob\nmetadata: {name: x}\nspec: {}\n")
    assert train.main(["--job", str(job_file), "--dry-run"]) == 2
    assert "herl.train:" in capsys.readouterr().err


def test_overrides_compose_with_verls_real_config():
    """Our overrides are valid against veRL 0.9.1's Hydra config (keys exist, types fit, + keys add)."""
    import verl
    from hydra import compose, initialize_config_dir

    from herl.verl_plugin.settings import hindsight_config_from_verl

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    ov = job_to_verl_overrides(_job({"preset": "official-medical", "reward": {"judge": JUDGE}}))
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=ov)
    assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == "herl_mixpolicy"
    assert cfg.reward.custom_reward_function.reward_kwargs.model == "gpt-4o-mini"
    hs = hindsight_config_from_verl(cfg)
    assert hs.gamma == pytest.approx(0.1) and hs.revision_use_rollout_sampling and not hs.seeded_slots


def test_launcher_pins_the_task_runner_to_the_ray_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loop must run where the metrics port is scraped (the head pod)."""
    import verl.trainer.main_ppo as main_ppo

    from herl.metrics.cluster import HEAD_RESOURCE
    from herl.verl_plugin import launch

    real = launch.task_runner_class()
    assert hasattr(real, "remote")  # a real Ray option wrapper, built without a running cluster

    seen: dict[str, object] = {}

    class Spy:
        @staticmethod
        def options(**kwargs: object) -> str:
            seen.update(kwargs)
            return "pinned"

    monkeypatch.setattr(main_ppo, "TaskRunnerV1", Spy)
    assert launch.task_runner_class() == "pinned"
    assert seen["resources"][HEAD_RESOURCE] > 0  # type: ignore[index]
    assert Path(launch.CONFIG_DIR, "ppo_trainer.yaml").is_file()

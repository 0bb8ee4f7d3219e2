"""The cluster engine's hindsight path on veRL's real v1 data path, on CPU.

Everything between the dataset and the advantage is veRL 0.9.1's own code or ours: a local Ray, veRL's
TransferQueue, the trainer's dataloader, ``AgentLoopManagerTQ`` with a real agent-loop worker, the
real ``LLMServerManager`` / router / ``LLMServerClient``, the real ``RewardLoopManager`` running our
``compute_score`` with the IFEval checkers, veRL's sync ``ReplayBuffer`` wrapped by our sampler, and
veRL's ``_compute_old_log_prob`` (bypass mode) and ``_compute_advantage`` reading what the stage wrote.

The one stand-in is the rollout server: a loopback Ray actor registered as a rollout replica type, which
answers every prompt with its own token ids (a blank revision among them) instead of running vLLM.
What still needs a GPU, and so is not reached here: ``HeRLTrainerSync._setup`` (it starts the FSDP
workers first) with its ``_install_loss`` RPC, the actor's log-prob and update passes, and
``on_sample_end`` (puts vLLM to sleep); ``bench/gpu/herl_smoke.sh`` runs those.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.cloudpickle
import torch
import transfer_queue as tq
import verl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from verl.experimental.reward_loop.reward_loop import RewardLoopManager
from verl.trainer.ppo.v1 import AgentLoopManagerTQ, get_trainer_cls
from verl.workers.rollout.llm_server import LLMServerManager
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry, TokenOutput

from herl.api.validate import validate_document
from herl.engine.tiny import build_tiny_model_dir
from herl.verl_plugin.loss import HE_MASK_KEY
from herl.verl_plugin.overrides import job_to_verl_overrides
from herl.verl_plugin.trainer import HeRLTrainerSync, _HindsightSampler, _rows_of

REPLICA = "herl_loopback"
G, RESPONSE_LENGTH = 4, 16

# Prompt 0: "ocean", not "storm". Prompt 1: "hello", no commas. (No language-detecting checkers: a
# short answer's language is a coin toss.) Each rollout scores 0 or 0.5, so both groups are revised; the
# loopback answers every hindsight prompt by the draft it carries. Each group has a blank revision and
# a winning one: whichever group the replay buffer puts first, its blank comes before a revision that
# must be scored on its own ids.
PROMPTS = [
    ("Describe the sea. Use the word ocean. Do not mention a storm.",
     ["keywords:existence", "keywords:forbidden_words"], [{"keywords": ["ocean"]}, {"forbidden_words": ["storm"]}]),
    ("Greet a friend. Use the word hello. Do not use commas.",
     ["keywords:existence", "punctuation:no_comma"], [{"keywords": ["hello"]}, {}]),
]  # fmt: skip
ROLLOUTS = {
    "ocean": ["the sea is calm", "a storm at sea", "ocean storm", "a quiet bay"],  # 0.5, 0, 0.5, 0.5
    "hello": ["hello, friend", "hi friend", "hi, friend", "hey, you"],  # 0.5, 0.5, 0, 0
}
REVISIONS = {
    "the sea is calm": "",  # blank: never scored, must not shift the ids of the revisions after it
    "ocean storm": "the ocean is calm",  # 1.0: kept as prompt 0's HE row
    "a quiet bay": "a calm bay",  # 0.5: a tie, loses to the strict improvement
    "hello, friend": "",  # blank
    "hi friend": "hello there",  # 1.0: kept as prompt 1's HE row
}


class LoopbackServer:
    """Stands in for a vLLM server replica: same ``generate`` signature, answers from the tables above."""

    def __init__(self, model_dir: str) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.sessions: dict[str, int] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **_: Any
    ) -> TokenOutput:
        text = self.tok.decode(prompt_ids, skip_special_tokens=True)
        self.calls.append((text, dict(sampling_params)))
        if "Draft:\n" in text:
            answer = REVISIONS[text.split("Draft:\n", 1)[1].split("\n", 1)[0]]
        else:
            table = ROLLOUTS["ocean" if "ocean" in text else "hello"]
            k = self.sessions.get(text, 0)
            self.sessions[text] = k + 1
            answer = table[k % len(table)]
        ids = (
            [*self.tok(answer, add_special_tokens=False)["input_ids"], self.tok.eos_token_id]
            if answer
            else []
        )
        return TokenOutput(token_ids=ids, log_probs=[-0.25] * len(ids), stop_reason="completed")

    def take_calls(self) -> list[tuple[str, dict[str, Any]]]:
        calls, self.calls = self.calls, []
        return calls


class LoopbackReplica(RolloutReplica):
    """A rollout replica type whose "server" is the loopback actor (no GPU, no resource pool)."""

    model_dir = ""

    async def init_standalone(self) -> None:
        actor = ray.remote(LoopbackServer).remote(self.model_dir)
        self.servers = [actor]
        self._server_handle, self._server_address = actor, f"loopback-{self.replica_rank}"

    async def launch_servers(self) -> None:
        raise RuntimeError("the loopback replica only runs standalone")


# What a CPU run changes in the job's own overrides (what `python -m herl.train` passes): one of each
# worker, the loopback replica type, one TransferQueue storage unit, and veRL's bypass mode, so the
# old log-probs are the rollout's (recomputing them needs the FSDP actor).
CPU_OVERRIDES = (
    f"actor_rollout_ref.rollout.name={REPLICA}",
    "actor_rollout_ref.rollout.nnodes=1",
    "actor_rollout_ref.rollout.n_gpus_per_node=1",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "actor_rollout_ref.rollout.calculate_log_probs=true",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    "algorithm.rollout_correction.bypass_mode=true",
)


@dataclass
class Cluster:
    config: Any
    llm: LLMServerManager
    rewards: RewardLoopManager
    agents: AgentLoopManagerTQ
    tokenizer: Any


def _write_data(path: Path) -> None:
    rows = [
        {
            "prompt": [{"role": "user", "content": text}],
            "data_source": "ifeval",
            "reward_model": {
                "style": "rule",
                "ground_truth": json.dumps({"instruction_id_list": ids, "kwargs": kw}),
            },
            "extra_info": {"index": i, "question": text},
        }
        for i, (text, ids, kw) in enumerate(PROMPTS)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)


def _config(work: Path, model: Path) -> Any:
    doc = {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": "cpu-path"},
        "spec": {
            "model": {"path": str(model)},
            "data": {
                "train": str(work / "train.parquet"),
                "maxPromptLength": 512,
                "maxResponseLength": RESPONSE_LENGTH,
                "maxInstructionLength": 128,
                "hindsightPromptMargin": 64,
            },
            "algorithm": {
                "groupSize": G,
                "trainBatchSize": 2,
                "miniBatchSize": 2,
                "totalSteps": 2,
                "seed": 5,
            },
            "resources": {"workers": 1, "gpusPerWorker": 1, "tensorParallel": 1},
        },
    }
    job, findings = validate_document(doc)
    assert job is not None, findings
    overrides = [*job_to_verl_overrides(job, checkpoint_dir=str(work / "ckpt")), *CPU_OVERRIDES]
    with initialize_config_dir(
        config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer", "config"), version_base=None
    ):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    config.transfer_queue.enable = True  # as veRL's TaskRunnerV1.run does
    OmegaConf.resolve(config)
    return config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cpu_path")
    model = build_tiny_model_dir(work / "model", seed=0)
    _write_data(work / "train.parquet")
    config = _config(work, model)
    LoopbackReplica.model_dir = str(model)
    RolloutReplicaRegistry.register(REPLICA, lambda: LoopbackReplica)
    # Ray ships this module's classes to the actors by value (tests/ is not importable there).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # TransferQueue's controller and storage unit each hold one CPU; the other actors need one free
    # CPU to be placed. Logical CPUs: this runs on 2 cores.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        tq.init(config.transfer_queue)
        llm = LLMServerManager.create(config=config)
        rewards = RewardLoopManager(config=config)
        agents = AgentLoopManagerTQ.create(
            config=config,
            llm_client=llm.get_client(),
            teacher_client=None,
            reward_loop_worker_handles=rewards.reward_loop_worker_handles,
        )
        from transformers import AutoTokenizer

        yield Cluster(config, llm, rewards, agents, AutoTokenizer.from_pretrained(str(model)))
    finally:
        tq.close()
        ray.shutdown()
        RolloutReplicaRegistry._registry.pop(REPLICA, None)
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _trainer(c: Cluster, step: int, **herl: Any) -> HeRLTrainerSync:
    """The trainer veRL's TaskRunner would build for ``trainer_mode=herl_sync``, with the managers that
    ``init()`` would create (it also starts the FSDP workers, which is what needs a GPU)."""
    config = copy.deepcopy(c.config)
    with open_dict(config):
        for key, value in herl.items():
            OmegaConf.update(config, f"herl.hindsight.{key}", value, force_add=True)
    trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)
    assert isinstance(trainer, HeRLTrainerSync) and isinstance(trainer.replay_buffer, _HindsightSampler)
    trainer._init_tokenizer()
    trainer._init_dataloader()
    trainer.llm_server_manager, trainer.reward_loop_manager, trainer.agent_loop_manager = (
        c.llm,
        c.rewards,
        c.agents,
    )
    trainer.global_steps = step
    return trainer


def _step(trainer: HeRLTrainerSync) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``_step_once`` up to the advantage, minus what needs workers (balance, log-prob passes)."""
    trainer.prepare_step()  # dataloader -> TransferQueue -> agent loop -> loopback -> reward loop
    batch, metrics = trainer.replay_buffer.sample(
        global_steps=trainer.global_steps,
        partition_id="train",
        batch_size=trainer.config.data.train_batch_size,
    )
    trainer._compute_old_log_prob(batch, metrics)
    trainer._compute_advantage(batch, metrics)
    rows = _rows(batch)
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)  # as fit() does after each step
    return metrics, rows


def _rows(batch: Any) -> list[dict[str, Any]]:
    fields = ["uid", "prompts", "responses", "response_mask", "rm_scores", HE_MASK_KEY, "advantages",
              "old_log_probs", "rollout_log_probs", "extra_fields", "data_source"]  # fmt: skip
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
    cols = {f: _rows_of(data[f], len(batch)) for f in fields}
    return [
        {"key": key, "tag": batch.tags[i], **{f: cols[f][i] for f in fields}}
        for i, key in enumerate(batch.keys)
    ]


def _text(c: Cluster, ids: torch.Tensor) -> str:
    return c.tokenizer.decode(ids.tolist(), skip_special_tokens=True)


def _calls(c: Cluster) -> list[tuple[str, dict[str, Any]]]:
    return ray.get(c.llm.server_handles[0].take_calls.remote())


def test_hindsight_step_on_verls_data_path(cluster: Cluster) -> None:
    c = cluster
    _calls(c)
    trainer = _trainer(c, step=1)
    metrics, rows = _step(trainer)

    # ONE fan-out of the 5 tied-best drafts through LLMServerClient -> router -> server, with the
    # revision's sampling settings explicit
    revisions = [(text, params) for text, params in _calls(c) if "Draft:\n" in text]
    drafts = sorted(text.split("Draft:\n", 1)[1].split("\n", 1)[0] for text, _ in revisions)
    assert drafts == sorted(REVISIONS)
    assert all(
        p["temperature"] == pytest.approx(0.3) and p["max_tokens"] == RESPONSE_LENGTH for _, p in revisions
    )

    m = {k: v for k, v in metrics.items() if k.startswith("herl/")}
    assert (m["herl/revisions_generated"], m["herl/empty_revisions"], m["herl/revision_errors"]) == (5, 2, 0)
    assert (m["herl/kept"], m["herl/fallbacks"], m["herl/he_rows"], m["herl/reward_errors"]) == (2, 0, 2, 0)
    assert metrics["timing_s/herl_stage"] > 0

    assert len(rows) == 2 * G and len({r["uid"] for r in rows}) == 2
    he_rows = [r for r in rows if r[HE_MASK_KEY].sum() > 0]
    # each kept revision carries its OWN ids (not a blank's, not a neighbour's), EOS-terminated, the
    # 1.0 the reward loop gave it under the ORIGINAL prompt, and the hindsight prompt of its draft
    assert sorted(_text(c, r["responses"]) for r in he_rows) == ["hello there", "the ocean is calm"]
    adv = {r["key"]: float(r["advantages"][0]) for r in rows}
    for row in he_rows:
        draft = {"the ocean is calm": "ocean storm", "hello there": "hi friend"}[_text(c, row["responses"])]
        hindsight = _text(c, row["prompts"])
        assert "Unmet:" in hindsight and f"Draft:\n{draft}\n" in hindsight
        assert int(row["responses"][-1]) == c.tokenizer.eos_token_id
        assert torch.equal(row[HE_MASK_KEY], row["response_mask"])
        assert float(row["rm_scores"].sum()) == pytest.approx(1.0) == float(row["rm_scores"][-1])
        assert row["extra_fields"]["reward_extra_info"]["score"] == pytest.approx(1.0)
        # the tags veRL's sequence balancing reads follow the new lengths
        assert row["tag"]["prompt_len"] == row["prompts"].numel()
        assert row["tag"]["seq_len"] == row["prompts"].numel() + row["responses"].numel()
        # veRL's bypass mode copied the HE row's rollout log-probs (one per token, EOS included)
        assert row["rollout_log_probs"].numel() == row["responses"].numel()
        torch.testing.assert_close(row["old_log_probs"], row["rollout_log_probs"])
        # veRL's GRPO over the written group: the HE row leads it
        group = [r for r in rows if r["uid"] == row["uid"]]
        assert adv[row["key"]] == max(adv[r["key"]] for r in group) > 0
        # BR: the draft whose revision won got +0.05 * (1 - 0.5), unless the HE row took its slot;
        # the blank's draft got nothing
        shaped = [round(float(r["rm_scores"].sum()), 4) for r in group if r is not row]
        assert 0.525 in shaped or m["herl/bonus_lost"] >= 1
        assert shaped.count(0.5) >= 1 and all(r[HE_MASK_KEY].sum() == 0 for r in group if r is not row)


def test_append_mode_writes_a_new_key(cluster: Cluster) -> None:
    c = cluster
    _calls(c)
    trainer = _trainer(c, step=2, incorporation="append")
    metrics, rows = _step(trainer)
    # both groups grow by one row: their HE rows, under new keys that follow veRL's {uid}_{n}_{i}
    assert len(rows) == 2 * G + 2 and metrics["herl/he_rows"] == 2
    appended = [r for r in rows if r["key"].endswith(f"_{G}_0")]
    assert sorted(r["key"] for r in appended) == sorted(f"{uid}_{G}_0" for uid in {r["uid"] for r in rows})
    assert sorted(_text(c, r["responses"]) for r in appended) == ["hello there", "the ocean is calm"]
    for r in appended:
        assert (
            r[HE_MASK_KEY].sum() == r["responses"].numel()
            and sum(x["uid"] == r["uid"] for x in rows) == G + 1
        )
        # every field of its group's row came along (the dataset fields included), then its own tokens
        assert r["data_source"] == "ifeval" and r["rollout_log_probs"].numel() == r["responses"].numel()
        assert r["tag"]["seq_len"] == r["prompts"].numel() + r["responses"].numel()

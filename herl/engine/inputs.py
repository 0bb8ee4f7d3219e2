"""The local engine's input checks: everything refused BEFORE any weight is loaded.

Training data (schema per reward type), the tokenizer and its EOS/pad, prompt lengths, and the memory
guard (from the model config alone, on the meta device). Each failure is a :class:`UserError` naming
the spec field, so ``herl train`` answers in a second rather than after a model load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from herl.engine import policy
from herl.engine.settings import EngineSettings
from herl.errors import UserError

IF_SOURCES = ("ifeval", "ifbench", "muldimif")
ACT_BUDGET_BYTES = 768 << 20
"""Saved-activation budget of one micro-batch piece (``HERL_ACT_BUDGET_MB`` overrides it)."""


def user_text(prompt: Any) -> str:
    """The user turns of a chat prompt (or the prompt itself when it is plain text)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(t.get("content", "")) for t in prompt if t.get("role") == "user")


def load_records(spec: Any) -> list[dict[str, Any]]:
    """The training rows named by ``spec.data`` (or the synthetic IF prompts)."""
    d = spec.data_
    if d.format == "synthetic-if":
        from herl.api.model import SyntheticDataSpec
        from herl.data.synthetic import generate_synthetic_if

        syn = d.synthetic or SyntheticDataSpec()
        return generate_synthetic_if(syn.num_prompts, syn.constraints_per_prompt, syn.seed)
    if not d.train:
        raise UserError("spec.data.train: a training file is required unless data.format is synthetic-if")
    from herl.data.loaders import load_prompts

    return load_prompts(d.format, d.train)


def check_records(spec: Any, records: list[dict[str, Any]]) -> None:
    """Every row has what the spec's reward needs to score it."""
    if not records:
        raise UserError("the training data holds no prompts")
    rtype = spec.reward_.type
    for i, row in enumerate(records):
        where = f"training row {i}"
        if not isinstance(row, dict) or "prompt" not in row:
            raise UserError(f"{where}: not a veRL row (needs prompt, data_source, reward_model)")
        if rtype == "instruction-following":
            src = str(row.get("data_source", "")).strip().lower()
            if src not in IF_SOURCES:
                raise UserError(
                    f"{where}: data_source {row.get('data_source')!r} is not an instruction-"
                    f"following source ({', '.join(IF_SOURCES)}); use reward.type rubric-judge "
                    f"for rubric data"
                )
            rm = row.get("reward_model")
            if not isinstance(rm, dict) or "ground_truth" not in rm:
                raise UserError(f"{where}: reward_model.ground_truth is missing")
        else:
            extra = row.get("extra_info") or {}
            if not extra.get("rubric"):
                raise UserError(f"{where}: rubric-judge rows need extra_info.rubric")
    if rtype == "rubric-judge" and spec.reward_.judge is None:
        raise UserError("spec.reward.judge is required for reward.type rubric-judge")


@dataclass(frozen=True)
class Tokens:
    """The tokenizer and the ids the engine needs from it (and from the model config)."""

    tokenizer: Any
    config: Any
    eos_ids: frozenset[int]
    eos_id: int
    pad_id: int


def tokenizer_dir(spec: Any, model_dir: Path) -> Path:
    """``spec.model.tokenizerPath``, else the model directory; it must exist."""
    tok_dir = Path(spec.model.tokenizer_path) if spec.model.tokenizer_path else model_dir
    if not tok_dir.is_dir():
        raise UserError(f"spec.model.tokenizerPath: directory not found: {tok_dir}")
    return tok_dir


def load_tokenizer(spec: Any, model_dir: Path, tok_dir: Path) -> Tokens:
    """Tokenizer + model config; a chat template and an EOS token are required."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(tok_dir), trust_remote_code=spec.model.trust_remote_code
        )
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=spec.model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"spec.model.path: cannot load a tokenizer/config from {model_dir}: {exc}") from None
    if spec.model.chat_template:
        tokenizer.chat_template = spec.model.chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"{tok_dir}: the tokenizer has no chat template; set spec.model.chatTemplate")
    eos = {tokenizer.eos_token_id}
    gen_eos = getattr(config, "eos_token_id", None)
    eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    eos_ids = frozenset(int(e) for e in eos if e is not None)
    if not eos_ids:
        raise UserError(f"{tok_dir}: neither the tokenizer nor the config names an EOS token")
    eos_id = int(tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(eos_ids))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Tokens(tokenizer=tokenizer, config=config, eos_ids=eos_ids, eos_id=eos_id, pad_id=pad_id)


def chat_prompt_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """A row's prompt through the chat template, ready for generation."""
    chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_prompt_lengths(prompt_ids: list[list[int]], limit: int) -> None:
    """Refuse prompts over the limit before any work (a silent truncation would change the task)."""
    too_long = [(i, len(p)) for i, p in enumerate(prompt_ids) if len(p) > limit]
    if too_long:
        i, n = too_long[0]
        raise UserError(
            f"{len(too_long)} training prompt(s) exceed the prompt limit of {limit} tokens "
            f"(data.maxInstructionLength/maxPromptLength); first: row {i} with {n} tokens. "
            f"Raise the limit or filter the data."
        )


@dataclass(frozen=True)
class MemoryPlan:
    """How training fits in memory: the estimate, and how micro-batches are split to fit."""

    estimate: policy.MemoryEstimate
    act_model: policy.ActivationModel
    act_budget: int
    ckpt_mode: str
    warning: str | None


def plan_memory(
    config: Any, s: EngineSettings, *, instruction_limit: int, chunk_tokens: int, device: torch.device
) -> MemoryPlan:
    """The memory guard, from the config alone (meta device): refuse absurd sizes before loading weights.

    Activation budget: micro-batches are split further so each piece's saved activations fit
    ``ACT_BUDGET_BYTES``; a single row too long for it runs with gradient checkpointing (one extra
    forward). ``HERL_GRAD_CKPT=1`` checkpoints always, ``=0`` never splits (spec micro-batches as given).
    """
    n_params = policy.count_params(config)
    hs = s.hindsight
    gen_rows = s.batch_prompts * s.group_size
    micro = min(s.micro_batch_rows, s.mini_batch_prompts * (s.group_size + 1))
    prompt_len = s.max_prompt_length if hs.enabled else instruction_limit

    def estimate(ckpt_on: bool) -> policy.MemoryEstimate:
        return policy.estimate_memory(
            config,
            n_params,
            gen_rows=gen_rows,
            micro_rows=micro,
            prompt_len=prompt_len,
            response_len=s.max_response_length,
            use_reference=s.use_kl,
            chunk_tokens=chunk_tokens,
            grad_checkpointing=ckpt_on,
        )

    act_model = policy.ActivationModel.from_config(config)
    act_budget = int(float(os.environ.get("HERL_ACT_BUDGET_MB", "0")) * (1 << 20)) or ACT_BUDGET_BYTES
    ckpt_mode = os.environ.get("HERL_GRAD_CKPT", "auto")
    seq_max = prompt_len + s.max_response_length
    if ckpt_mode == "0":
        est = estimate(False)
    else:
        one_row = act_model.bytes(1, seq_max) > act_budget or ckpt_mode == "1"
        est = estimate(True) if one_row else estimate(False)
        if not one_row:
            est = replace(est, training=min(est.training, act_budget + est.training // max(micro, 1)))
    warning = policy.check_memory(
        est,
        device,
        f"batch {s.batch_prompts} prompts × {s.group_size} responses (micro-batch {s.micro_batch_rows} rows)",
    )
    return MemoryPlan(
        estimate=est, act_model=act_model, act_budget=act_budget, ckpt_mode=ckpt_mode, warning=warning
    )

"""Generation, chunked log-probs and the memory estimate of the local engine (transformers + torch).

Log-probs never materialise full-vocabulary logits for a whole batch: the transformer body runs once,
then the LM head + log-softmax run over the RESPONSE positions only, in chunks of ``chunk_tokens``
tokens. With gradients each chunk is checkpointed (recomputed in backward), so the saved activations
per chunk are its hidden states, not ``chunk × vocab`` floats. Logits are divided by the rollout
temperature before the softmax, as veRL's actor does, so π_old and π_θ live on the same scale as the
sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from herl.errors import UserError

DEFAULT_CHUNK_TOKENS = 1024
GIB = float(1 << 30)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), left-padded to the longest sequence."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
            mask[i, : len(s)] = 1
    return ids, mask


def cut_at_eos(ids: Sequence[int], eos_ids: set[int], pad_id: int) -> list[int]:
    """Tokens up to and including the first EOS (veRL's ``response_mask_mode=eos``); trailing pad dropped."""
    out: list[int] = []
    for t in ids:
        out.append(int(t))
        if t in eos_ids:
            return out
    while out and out[-1] == pad_id and pad_id not in eos_ids:
        out.pop()
    return out


@torch.no_grad()
def generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    eos_ids: set[int],
    pad_id: int,
    seed: int,
    batch_rows: int = 64,
) -> list[list[int]]:
    """Sample one response per prompt (token ids, cut after the first EOS). Seeded: same seed, same text.

    ``temperature == 0`` is greedy. top_k is off (veRL's -1), no repetition penalty: plain sampling.
    """
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    do_sample = temperature > 0
    cfg = GenerationConfig(
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=0 if do_sample else None,
        max_new_tokens=max_new_tokens,
        eos_token_id=sorted(eos_ids),
        pad_token_id=pad_id,
        repetition_penalty=1.0,
        use_cache=True,
    )
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    out: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_rows):
            chunk = prompts[start : start + batch_rows]
            ids, mask = left_pad(chunk, pad_id)
            gen = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=cfg
            )
            new = gen[:, ids.shape[1] :].tolist()
            out.extend(cut_at_eos(row, eos_ids, pad_id) for row in new)
    finally:
        model.train(was_training)
    return out


def _chunk_logp(
    head: torch.nn.Module, h: torch.Tensor, targets: torch.Tensor, inv_temp: float, want_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(h).float()
    if inv_temp != 1.0:
        logits = logits * inv_temp
    logz = torch.logsumexp(logits, dim=-1)
    lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    if want_entropy:
        p = torch.softmax(logits, dim=-1)
        ent = logz - (p * logits).sum(-1)
    else:
        ent = torch.zeros_like(lp)
    return lp, ent


def response_log_probs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    temperature: float = 1.0,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    with_entropy: bool = False,
    autocast_dtype: torch.dtype | None = None,
    head_budget_bytes: int = 256 << 20,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log_probs, entropy, response_mask), each ``(rows, max_response_len)``, of each response under
    ITS OWN prompt. Differentiable when grad is enabled; padded positions are 0."""
    device = next(model.parameters()).device
    p_ids, p_mask = left_pad(prompts, pad_id)
    r_ids, r_mask = right_pad(responses, pad_id)
    n, p_len = p_ids.shape
    r_len = r_ids.shape[1]
    ids = torch.cat([p_ids, r_ids], 1).to(device)
    attn = torch.cat([p_mask, r_mask], 1).to(device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    head = model.get_output_embeddings()
    ctx = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype
        else torch.autocast(device.type, enabled=False)
    )
    with ctx:
        hidden = body(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False).last_hidden_state
    # hidden at position t predicts token t+1: responses start at p_len.
    h = hidden[:, p_len - 1 : p_len + r_len - 1]
    r_mask_d = r_mask.to(device).bool()
    flat_h = h[r_mask_d]
    flat_t = r_ids.to(device)[r_mask_d]
    inv_temp = 1.0 / temperature if temperature > 0 else 1.0
    lps, ents = [], []
    # Checkpoint the head only when this micro-batch's logits (+ softmax + grad) would be large: the
    # recomputation costs one more LM-head matmul, about a fifth of a small model's forward.
    vocab = int(getattr(head, "out_features", 0) or head.weight.shape[0])
    grad = torch.is_grad_enabled() and flat_h.shape[0] * vocab * 12 > head_budget_bytes
    for s in range(0, flat_h.shape[0], chunk_tokens):
        hc, tc = flat_h[s : s + chunk_tokens], flat_t[s : s + chunk_tokens]
        if grad:  # with grad enabled and a small batch, chunks run plainly (autograd keeps their logits)
            lp, ent = checkpoint(_chunk_logp, head, hc, tc, inv_temp, with_entropy, use_reentrant=False)
        else:
            lp, ent = _chunk_logp(head, hc, tc, inv_temp, with_entropy)
        lps.append(lp)
        ents.append(ent)
    logp = torch.zeros((n, r_len), dtype=torch.float32, device=device)
    entropy = torch.zeros((n, r_len), dtype=torch.float32, device=device)
    if lps:
        logp = logp.masked_scatter(r_mask_d, torch.cat(lps))
        entropy = entropy.masked_scatter(r_mask_d, torch.cat(ents))
    return logp, entropy, r_mask.to(device)


# ------------------------------------------------------------------------------------------ memory


@dataclass(frozen=True)
class MemoryEstimate:
    """Rough peak memory of one training step, in bytes, by component (an upper-bound sketch)."""

    params: int
    weights: int
    optimizer: int
    reference: int
    generation: int
    training: int

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.reference + max(self.generation, self.training)

    def describe(self) -> str:
        return (
            f"{self.total / GIB:.1f} GiB (weights {self.weights / GIB:.2f}, grads+AdamW "
            f"{self.optimizer / GIB:.2f}, reference {self.reference / GIB:.2f}, generation KV "
            f"{self.generation / GIB:.2f}, training activations {self.training / GIB:.2f})"
        )


@dataclass(frozen=True)
class ActivationModel:
    """Saved-activation bytes of a training forward (fp32, no recomputation), from the config."""

    layers: int
    per_token_layer: int
    heads: int
    hidden: int

    @classmethod
    def from_config(cls, config: Any, bytes_per: int = 4) -> ActivationModel:
        hidden = int(getattr(config, "hidden_size", 1))
        inter = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
        return cls(
            layers=int(getattr(config, "num_hidden_layers", 1)),
            per_token_layer=(12 * hidden + 3 * inter) * bytes_per,
            heads=int(getattr(config, "num_attention_heads", 1)),
            hidden=hidden,
        )

    def bytes(self, rows: int, seq: int, checkpointing: bool = False) -> int:
        att = rows * self.heads * seq * seq * 8
        if checkpointing:
            return rows * seq * (self.layers * self.hidden * 4 + self.per_token_layer) + att
        return rows * seq * self.layers * self.per_token_layer + att * self.layers

    def rows_within(self, seq: int, budget: int) -> int:
        """How many rows of length ``seq`` fit ``budget`` without recomputation (0: not even one)."""
        one = self.bytes(1, seq)
        return int(budget // one) if one > 0 else 1 << 30


def split_for_budget(
    lengths: Sequence[tuple[int, int]], model: ActivationModel, budget: int
) -> list[tuple[list[int], bool]]:
    """Split one micro-batch (``(prompt_len, response_len)`` per row, in order) into consecutive pieces
    whose activations fit ``budget``; a row that does not fit alone runs with gradient checkpointing
    (flag True). The loss is aggregated with the whole mini-batch's token count, so how a micro-batch
    is split never changes the gradient."""
    out: list[tuple[list[int], bool]] = []
    cur: list[int] = []
    p_max = r_max = 0
    for i, (p, r) in enumerate(lengths):
        np_, nr = max(p_max, p), max(r_max, r)
        if cur and model.bytes(len(cur) + 1, np_ + nr) > budget:
            out.append((cur, model.bytes(len(cur), p_max + r_max) > budget))
            cur, np_, nr = [], p, r
        cur.append(i)
        p_max, r_max = np_, nr
    if cur:
        out.append((cur, model.bytes(len(cur), p_max + r_max) > budget))
    return out


def count_params(config: Any) -> int:
    """Parameter count from a config alone (meta device: no memory, no weights read)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def estimate_memory(
    config: Any,
    n_params: int,
    *,
    gen_rows: int,
    micro_rows: int,
    prompt_len: int,
    response_len: int,
    use_reference: bool,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    bytes_per: int = 4,
    grad_checkpointing: bool = False,
) -> MemoryEstimate:
    """Peak memory estimate for fp32 training on one device (generation and training do not overlap).

    With gradient checkpointing only each layer's input is kept per layer, plus one layer's full set
    during its recomputation."""
    layers = int(getattr(config, "num_hidden_layers", 1))
    hidden = int(getattr(config, "hidden_size", 1))
    inter = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", 1))
    kv_heads = int(getattr(config, "num_key_value_heads", heads) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // max(heads, 1))
    vocab = int(getattr(config, "vocab_size", 32000))
    seq = prompt_len + response_len
    kv = gen_rows * layers * 2 * kv_heads * head_dim * seq * bytes_per
    gen = kv + gen_rows * vocab * bytes_per * 4
    # Saved activations per token and layer (attention in/out, MLP in/gate/up/out, norms) + attention
    # scores (eager upper bound) + the LM-head chunk (logits, softmax, grad).
    per_layer = (12 * hidden + 3 * inter) * bytes_per
    if grad_checkpointing:
        act = micro_rows * seq * (layers * hidden * bytes_per + per_layer)
        att = micro_rows * heads * seq * seq * bytes_per * 2
    else:
        act = micro_rows * seq * layers * per_layer
        att = micro_rows * heads * seq * seq * bytes_per * 2 * layers
    head = chunk_tokens * vocab * bytes_per * 3
    weights = n_params * bytes_per
    return MemoryEstimate(
        params=n_params,
        weights=weights,
        optimizer=3 * weights,
        reference=weights if use_reference else 0,
        generation=gen,
        training=act + att + head,
    )


def device_memory(device: torch.device) -> tuple[int, int]:
    """(total, available) bytes on ``device``."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(total), int(free)
    import psutil

    vm = psutil.virtual_memory()
    return int(vm.total), int(vm.available)


def check_memory(est: MemoryEstimate, device: torch.device, what: str) -> str | None:
    """Raise :class:`UserError` when the estimate exceeds the device's TOTAL memory (an absurd size);
    return a warning line when it only exceeds what is free right now."""
    total, avail = device_memory(device)
    if est.total > total:
        raise UserError(
            f"out-of-memory guard: {what} needs an estimated {est.describe()}, more than the "
            f"{total / GIB:.1f} GiB this {device.type} has; reduce algorithm.trainBatchSize, groupSize, "
            f"microBatchSizePerGpu or data.maxPromptLength/maxResponseLength"
        )
    if est.total > avail:
        return (
            f"memory: the step needs ~{est.total / GIB:.1f} GiB but only {avail / GIB:.1f} GiB is free "
            f"now; it may swap or be killed"
        )
    return None

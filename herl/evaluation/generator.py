"""Text generators for evaluation: a protocol, a transformers implementation and a vLLM one.

Evaluation only needs "prompts in, one completion each out", so it is written against
:class:`Generator`; the local engine (herl/engine) can pass its own. Prompts are user-turn texts: each
implementation wraps them with the model's chat template (HiR protocol), so the hindsight prompt of
``--revise`` is also sent as a user turn (the cleaner variant of the released raw-text prompt).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from herl.errors import UserError

log = logging.getLogger(__name__)

#: ``progress(prompts_done, new_tokens)`` after each batch (generators that batch call it).
Progress = Callable[[int, int], None]


@runtime_checkable
class Generator(Protocol):
    """One completion per prompt, in order."""

    def generate(
        self, prompts: list[str], temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[str]: ...


def vllm_available() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except Exception:  # vllm raises more than ImportError on machines without a GPU
        return False
    return bool(torch.cuda.is_available())


class TransformersGenerator:
    """``model.generate`` with the chat template, batched with left padding. CPU or one GPU.

    Sampling is seeded per call (``torch.manual_seed(seed)``), so a run is repeatable on one machine.
    Weights load in float32 on a CPU and in the checkpoint's dtype on a GPU (:func:`herl.runtime.load_dtype`,
    the decision ``herl train`` shares); CPU threads follow :func:`herl.runtime.configure_cpu`.
    """

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from herl.runtime import configure_cpu, load_dtype, pick_device

        self.batch_size = max(1, batch_size)
        self.device = pick_device(device)
        if self.device == "cpu":
            configure_cpu()
        self.dtype = load_dtype(self.device, dtype)
        try:
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path)
            self.model = model or AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load model {model_path!r}: {exc}") from None
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            log.warning("model %s has no chat template; prompts are sent as raw text", model_path)

    def _format(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def generate(
        self,
        prompts: list[str],
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int,
        progress: Progress | None = None,
    ) -> list[str]:
        import torch

        torch.manual_seed(seed)
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self._format(p) for p in prompts[start : start + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.device
            )
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "pad_token_id": self.tokenizer.pad_token_id,
            }
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
            else:
                kwargs.update(do_sample=False)
            with torch.no_grad():
                gen = self.model.generate(**enc, **kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
            out.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
            if progress is not None:
                progress(len(texts), int((new != self.tokenizer.pad_token_id).sum()))
        return out


class VLLMGenerator:
    """vLLM offline engine with ``LLM.chat`` (applies the chat template). Needs a GPU."""

    def __init__(self, model_path: str, *, max_model_len: int | None = None, **engine_kwargs: Any) -> None:
        from vllm import LLM

        if max_model_len:
            engine_kwargs["max_model_len"] = max_model_len
        self.llm = LLM(model=model_path, **engine_kwargs)

    def generate(
        self, prompts: list[str], temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed, n=1
        )
        convs = [[{"role": "user", "content": p}] for p in prompts]
        outs = self.llm.chat(convs, params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]


def load_generator(
    model_path: str, backend: str = "auto", *, batch_size: int = 8, max_model_len: int | None = None
) -> Generator:
    """``auto`` picks vLLM when it imports and a GPU is present, else transformers."""
    if backend not in ("auto", "transformers", "vllm"):
        raise UserError(f"unknown generation backend {backend!r} (allowed: auto, transformers, vllm)")
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        if not vllm_available():
            raise UserError("backend vllm needs the vllm package and a CUDA GPU; use --backend transformers")
        return VLLMGenerator(model_path, max_model_len=max_model_len)
    return TransformersGenerator(model_path, batch_size=batch_size)

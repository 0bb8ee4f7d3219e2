"""A tiny random causal LM with a real tokenizer, built in-process in about a second (tests, demos).

Why: unit tests of the local engine, the metrics endpoint and the evaluation code need a model that
generates, back-propagates and saves like a real one, offline and fast on two busy cores. The tokenizer
is a byte-level BPE trained on a small built-in corpus (so any text round-trips) and wrapped as a
``PreTrainedTokenizerFast`` with a ChatML chat template; the model is a random ``Qwen2ForCausalLM``
(hidden 64, 2 layers). Everything is seeded, so two builds are identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

_CORPUS = (
    "Write a short note about coffee. Your entire response should be in English, and in all lowercase letters.",
    "Describe the ocean to a friend. In your entire response, refrain from the use of any commas.",
    "Explain why music matters. Answer with less than 50 words. Include keywords ['music'] in the response.",
    "You act as a revision assistant. Preserve every constraint the draft already meets, repair each one.",
    "Satisfied: Unmet: Draft: Instruction: Candidate: Reply with the revised answer and nothing else.",
    "The quick brown fox jumps over the lazy dog. P.S. Hope this helps! Any other questions?",
    "system user assistant 0123456789 !?.,;:'\"()[]{}<>-_=+*/\\|@#$%^&~` \n\t",
)


def tiny_tokenizer(vocab_size: int = 384) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ChatML specials and chat template (~0.1 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        chat_template=CHATML_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def tiny_model(tokenizer: Any, *, seed: int = 0, hidden: int = 64, layers: int = 2) -> Any:
    """A random ``Qwen2ForCausalLM`` sized to ``tokenizer`` (float32, eval mode), seeded."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Qwen2ForCausalLM(config).to(torch.float32)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def build_tiny_model_dir(path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny model + tokenizer to ``path`` (a normal transformers directory) and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    tiny_model(tok, seed=seed).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def tiny_job(model: str | Path, name: str = "tiny", **changes: Any) -> dict[str, Any]:
    """A HeRLJob document that trains the tiny model in seconds (tests of the engine, the entrypoint and
    the real cluster). ``changes`` are dotted spec paths (``"algorithm.totalSteps": 5``); a dict value
    replaces the whole sub-object."""
    spec: dict[str, Any] = {
        "model": {"path": str(model), "dtype": "float32"},
        "data": {
            "format": "synthetic-if",
            "synthetic": {"numPrompts": 8, "constraintsPerPrompt": 2, "seed": 0},
            "maxPromptLength": 512,
            "maxInstructionLength": 200,
            "maxResponseLength": 12,
            "hindsightPromptMargin": 64,
        },
        "reward": {"instructionFollowing": {"workers": 1}},
        "algorithm": {
            "groupSize": 4,
            "trainBatchSize": 2,
            "miniBatchSize": 1,
            "microBatchSizePerGpu": 4,
            "learningRate": 1e-3,
            "totalSteps": 2,
            "seed": 3,
            "hindsight": {"enabled": True, "revision": {"maxTokens": 12}},
        },
        "checkpoints": {"saveEverySteps": 1, "keepLast": 2},
        "metrics": {"enabled": False},
    }
    for path, value in changes.items():
        node = spec
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return {"apiVersion": "herl.dev/v1alpha1", "kind": "HeRLJob", "metadata": {"name": name}, "spec": spec}

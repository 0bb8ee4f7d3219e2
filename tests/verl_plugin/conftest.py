"""Fixtures for the veRL plugin tests: a real byte-level BPE tokenizer trained in-process (offline)."""

from __future__ import annotations

import pytest

CORPUS = [
    "You act as a revision assistant. Preserve every constraint the draft already meets.",
    "Write a short poem about the sea in exactly three lines without commas.",
    "The answer must contain the word ocean and end with a question mark?",
    "Satisfied: Unmet: Draft: Instruction: Candidate: revised answer final text",
    "system user assistant hello world 0123456789 lines words letters",
] * 20


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|pad|>", "<|eos|>", "<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|eos|>", bos_token="<|bos|>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>{% endfor %}"
        "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
    )
    return fast

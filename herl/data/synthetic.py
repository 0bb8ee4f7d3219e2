"""Seeded synthetic instruction-following prompts for small local runs (no dataset download needed).

Each prompt is a short writing task plus 1..k IFEval constraints. The constraint text is the checker's own
``build_description`` output (lm-eval's copy of Google's IFEval checkers), so the prompt says exactly what
the reward checks. We only use constraints a ~135M-parameter instruct model satisfies *sometimes* (length
limits, lowercase, an end phrase, a keyword, no commas, a title, a postscript, ...): with hard ones
(JSON, exact paragraph counts, other languages) almost every reward would be 0 and a small run would
learn nothing. Constraint pairs that cannot hold together (a quoted response that must also end with a
phrase) are never drawn together.

Rows have veRL's parquet row shape, ``data_source="ifeval"``, so :func:`herl.rewards.score_if` scores them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

TOPICS: tuple[str, ...] = (
    "coffee",
    "rain",
    "bicycles",
    "libraries",
    "gardening",
    "the ocean",
    "chess",
    "winter",
    "music",
    "friendship",
    "trains",
    "cooking",
    "mountains",
    "recycling",
    "the moon",
    "dogs",
    "bread",
    "email",
    "sleep",
    "museums",
    "bees",
    "maps",
    "tea",
    "running",
    "volcanoes",
    "kites",
    "robots",
    "forests",
)

TASKS: tuple[str, ...] = (
    "Write a short note about {topic}.",
    "Describe {topic} to a friend.",
    "Explain why {topic} matters.",
    "Give some advice about {topic}.",
    "Write a short story about {topic}.",
    "Write a product description related to {topic}.",
    "Tell me a fun fact about {topic}.",
    "Write a short poem about {topic}.",
)

END_PHRASES = ("Is there anything else I can help with?", "Any other questions?", "Hope this helps!")
FORBIDDEN = ("very", "really", "thing", "stuff", "actually")

KwargsSampler = Callable[[random.Random, str], dict[str, Any]]


def _topic_word(topic: str) -> str:
    return topic.split()[-1]


# id -> sampler of kwargs (given the rng and the topic). Ranges chosen to be reachable by a tiny model.
CONSTRAINTS: dict[str, KwargsSampler] = {
    "length_constraints:number_words": lambda rng, t: rng.choice(
        [
            {"relation": "less than", "num_words": rng.choice([30, 50, 80, 120])},
            {"relation": "at least", "num_words": rng.choice([10, 20, 40])},
        ]
    ),
    "length_constraints:number_sentences": lambda rng, t: rng.choice(
        [
            {"relation": "less than", "num_sentences": rng.choice([3, 4, 6])},
            {"relation": "at least", "num_sentences": rng.choice([2, 3])},
        ]
    ),
    "change_case:english_lowercase": lambda rng, t: {},
    "punctuation:no_comma": lambda rng, t: {},
    "startend:end_checker": lambda rng, t: {"end_phrase": rng.choice(END_PHRASES)},
    "keywords:existence": lambda rng, t: {"keywords": [_topic_word(t)]},
    "keywords:frequency": lambda rng, t: {
        "keyword": _topic_word(t),
        "frequency": rng.choice([2, 3]),
        "relation": "at least",
    },
    "keywords:forbidden_words": lambda rng, t: {"forbidden_words": rng.sample(FORBIDDEN, 2)},
    "detectable_format:title": lambda rng, t: {},
    "detectable_content:postscript": lambda rng, t: {"postscript_marker": rng.choice(["P.S.", "P.P.S"])},
    "startend:quotation": lambda rng, t: {},
    "detectable_format:number_bullet_lists": lambda rng, t: {"num_bullets": rng.choice([2, 3])},
}

# Pairs that cannot both be met (or make each other pointless).
CONFLICTS: frozenset[frozenset[str]] = frozenset(
    {
        frozenset({"startend:quotation", "startend:end_checker"}),
        frozenset({"startend:quotation", "detectable_content:postscript"}),
        frozenset({"startend:end_checker", "detectable_content:postscript"}),
        frozenset({"keywords:existence", "keywords:frequency"}),
        frozenset({"change_case:english_lowercase", "startend:end_checker"}),  # the phrases are capitalised
        frozenset({"change_case:english_lowercase", "detectable_content:postscript"}),  # "P.S." is upper case
    }
)


def _pick_constraints(rng: random.Random, k: int) -> list[str]:
    chosen: list[str] = []
    for cid in rng.sample(sorted(CONSTRAINTS), len(CONSTRAINTS)):
        if len(chosen) == k:
            break
        if any(frozenset({cid, other}) in CONFLICTS for other in chosen):
            continue
        chosen.append(cid)
    return chosen


def generate_synthetic_if(n: int, constraints_per_prompt: int = 2, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` veRL rows, each with 1..``constraints_per_prompt`` constraints; identical for the same seed."""
    if n < 0 or constraints_per_prompt < 1:
        raise ValueError("n must be >= 0 and constraints_per_prompt >= 1")
    from herl.rewards.checkers import ifeval_registry
    from herl.rewards.instruction_following import build_checker

    registry = ifeval_registry()
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for index in range(n):
        topic = rng.choice(TOPICS)
        task = rng.choice(TASKS).format(topic=topic)
        k = rng.randint(1, min(constraints_per_prompt, len(CONSTRAINTS)))
        ids = _pick_constraints(rng, k)
        kwargs = [CONSTRAINTS[cid](rng, topic) for cid in ids]
        descriptions = [
            build_checker(registry, cid, kw, task)[1] for cid, kw in zip(ids, kwargs, strict=True)
        ]
        content = " ".join([task, *descriptions])
        rows.append(
            {
                "prompt": [{"role": "user", "content": content}],
                "data_source": "ifeval",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": {"instruction_id_list": ids, "kwargs": kwargs},
                },
                "extra_info": {
                    "index": index,
                    "split": "train",
                    "source": "herl-synthetic-if",
                    "seed": seed,
                    "question": content,
                    "task": task,
                    "topic": topic,
                },
            }
        )
    return rows

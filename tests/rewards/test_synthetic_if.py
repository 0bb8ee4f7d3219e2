"""The synthetic IF prompt generator: deterministic per seed, veRL row shape, every row scores."""

from __future__ import annotations

import itertools

import pytest

from herl.data.synthetic import CONFLICTS, CONSTRAINTS, generate_synthetic_if
from herl.rewards.instruction_following import score_if


def test_deterministic_per_seed() -> None:
    a = generate_synthetic_if(50, 3, seed=7)
    assert a == generate_synthetic_if(50, 3, seed=7)
    assert a != generate_synthetic_if(50, 3, seed=8)
    assert generate_synthetic_if(10, 3, seed=7) == a[:10]  # prefix-stable


def test_row_shape_and_constraints() -> None:
    rows = generate_synthetic_if(200, 3, seed=0)
    used = set()
    for i, row in enumerate(rows):
        assert set(row) == {"prompt", "data_source", "reward_model", "extra_info"}
        assert row["data_source"] == "ifeval"
        assert row["prompt"][0]["role"] == "user" and len(row["prompt"]) == 1
        truth = row["reward_model"]["ground_truth"]
        assert row["reward_model"]["style"] == "rule"
        ids = truth["instruction_id_list"]
        assert 1 <= len(ids) <= 3 and len(set(ids)) == len(ids) and len(truth["kwargs"]) == len(ids)
        assert not any(frozenset(p) in CONFLICTS for p in itertools.combinations(ids, 2))
        assert (
            row["extra_info"]["index"] == i and row["extra_info"]["question"] == row["prompt"][0]["content"]
        )
        used.update(ids)
    assert used == set(CONSTRAINTS)


def test_every_row_scores_without_error_and_rewards_vary() -> None:
    rows = generate_synthetic_if(120, 2, seed=3)
    scores = set()
    for row in rows:
        topic = row["extra_info"]["topic"]
        response = f"<<notes>>\n{topic} is {topic}. i like {topic} a lot\nP.S. any other questions?"
        result = score_if(response, row["reward_model"]["ground_truth"], row["data_source"])
        assert result.error is None, (row, result.error)
        assert all(c.followed is not None for c in result.constraints)
        scores.add(result.score)
    assert {0.0, 1.0} < scores | {0.0, 1.0} and len(scores) >= 3  # non-trivial: partial credit occurs


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate_synthetic_if(-1)
    assert generate_synthetic_if(0) == []

"""Row ↔ TransferQueue field conversion and the RewardResult round trip through reward_extra_info."""

from __future__ import annotations

import pytest
import torch

from herl.rewards.types import ConstraintVerdict, RewardResult
from herl.verl_plugin.reward import RESULT_KEY, result_from_extra_info, to_extra_info
from herl.verl_plugin.stage import Row
from herl.verl_plugin.trainer import HeRLTrainerSync, _rows_of

RES = RewardResult(
    score=0.5,
    dense=0.5,
    all_met=False,
    data_source="ifeval",
    constraints=(
        ConstraintVerdict(id="a", description="Use the word ocean.", followed=True, kwargs={"w": "ocean"}),
        ConstraintVerdict(id="b", description="End with a period.", followed=False),
        ConstraintVerdict(id="c", description="Be kind.", followed=None, weight=3.0),
    ),
)


def test_reward_result_round_trips_through_extra_info():
    info = to_extra_info(RES)
    assert isinstance(info[RESULT_KEY], str) and info["score"] == 0.5 and info["n_met"] == 1.0
    assert result_from_extra_info(info, 0.5) == RES


def test_released_layout_and_bare_score_fallbacks():
    info = {
        "dense": 0.0,
        "sparse": False,
        "constraint_results": [{"instruction_id": "x", "description": "d", "is_following": True}],
    }
    r = result_from_extra_info(info, 0.25)
    assert r.score == 0.25 and r.dense == 0.0 and r.met[0].id == "x"
    bare = result_from_extra_info({}, 1.0)
    assert bare.all_met and bare.constraints == ()


def _row(he: bool) -> Row:
    return Row(
        key="u_0_0",
        uid="u",
        prompt_ids=[5, 6, 7],
        response_ids=[8, 9, 1],
        response_mask=[1, 1, 1],
        token_scores=[0.0, 0.0, 1.0],
        result=RES,
        rollout_log_probs=[-0.1, -0.2, 0.0],
        he=he,
        changed=True,
        extra={"tag": {"status": "success", "global_steps": 3, "seq_len": 99}, "extra_fields": {"turn": 1}},
    )


def test_token_fields_of_an_he_row():
    f = HeRLTrainerSync._token_fields(object(), _row(he=True))  # no trainer state is used
    assert f["input_ids"].tolist() == [5, 6, 7, 8, 9, 1]
    assert f["position_ids"].tolist() == list(range(6))
    assert f["he_mask"].tolist() == [1, 1, 1] == f["loss_mask"].tolist()
    assert f["rm_scores"].sum().item() == pytest.approx(1.0)
    assert f["extra_fields"]["turn"] == 1
    assert result_from_extra_info(f["extra_fields"]["reward_extra_info"], 1.0) == RES
    assert HeRLTrainerSync._token_fields(object(), _row(he=False))["he_mask"].sum() == 0


def test_tags_follow_new_lengths():
    tag = HeRLTrainerSync._tag(_row(he=True))
    assert (tag["prompt_len"], tag["response_len"], tag["seq_len"]) == (3, 3, 6)
    assert tag["global_steps"] == 3 and tag["status"] == "success"


def test_rows_of_nested_dense_and_objects():
    nested = torch.nested.as_nested_tensor([torch.ones(2), torch.ones(3)], layout=torch.jagged)
    assert [t.numel() for t in _rows_of(nested, 2)] == [2, 3]
    assert [t.tolist() for t in _rows_of(torch.tensor([[1, 2], [3, 4]]), 2)] == [[1, 2], [3, 4]]
    assert _rows_of(["a", "b"], 2) == ["a", "b"]

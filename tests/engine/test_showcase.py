"""What ``herl train`` shows of the hindsight stage: real examples from the run, a line per step, and a
reward plot with integer steps and the steps where revisions were kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from herl.engine import showcase
from herl.engine.plot import reward_figure
from herl.engine.tiny import build_tiny_model_dir
from herl.rewards.batch import score_batch


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=0)


GT = {"instruction_id_list": ["detectable_format:json_format", "startend:quotation"], "kwargs": [{}, {}]}


def failing_job(model: Path, tmp_path: Path) -> Path:
    """A job whose constraints (JSON + quotation) a random model never meets: every group is revised."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "prompt": [{"role": "user", "content": f"Write about rain {i}."}],
            "data_source": "ifeval",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(GT)},
            "extra_info": {"index": i},
        }
        for i in range(4)
    ]
    data = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    doc = {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": "tiny-show"},
        "spec": {
            "model": {"path": str(model), "dtype": "float32"},
            "data": {
                "format": "verl-parquet",
                "train": str(data),
                "maxPromptLength": 512,
                "maxInstructionLength": 200,
                "maxResponseLength": 10,
                "hindsightPromptMargin": 64,
            },
            "reward": {"instructionFollowing": {"workers": 1}},
            "algorithm": {
                "groupSize": 4,
                "trainBatchSize": 2,
                "miniBatchSize": 2,
                "learningRate": 1e-3,
                "totalSteps": 2,
                "seed": 3,
                "hindsight": {"enabled": True, "revision": {"maxTokens": 8}},
            },
            "checkpoints": {"saveEverySteps": 2},
            "metrics": {"enabled": False},
        },
    }
    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def test_train_prints_a_real_example_and_a_line_per_step(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from herl.cli import main

    out_dir = tmp_path / "run"
    rc = main(["train", str(failing_job(tiny_dir, tmp_path)), "--out", str(out_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out

    metrics = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    examples = showcase.load_examples(out_dir / showcase.EXAMPLES_FILE)
    assert len(metrics) == 2 and examples
    for m in metrics:
        step = m["training/global_step"]
        mine = [e for e in examples if e["step"] == step]
        # one example per scored (non-empty) revision, and the joined ones are the kept HE rows
        assert len(mine) == m["herl/revisions_generated"] - m["herl/empty_revisions"]
        assert sum(e["joined"] for e in mine) == m["herl/kept"]
        line = f"step {step}: reward {m['critic/score/mean']:.3f}, all met {m['herl/all_met_rate']:.2f}, "
        line += f"revisions tried {int(m['herl/revisions_generated'])}, kept {int(m['herl/kept'])}"
        assert line in out

    # The printed example is a real one from the file, and its verdicts are the real checkers' verdicts.
    chosen = showcase.choose_example(examples)
    assert chosen is not None
    assert f"One revision from step {chosen['step']} (group {chosen['group']})" in out
    assert "Write about rain" in chosen["instruction"] and "instruction:" in out
    assert "revision assistant" in chosen["hindsight_prompt"]
    for text, met, unmet, score in (
        (chosen["draft"], chosen["draft_met"], chosen["draft_unmet"], chosen["draft_score"]),
        (chosen["revision"], chosen["revision_met"], chosen["revision_unmet"], chosen["revision_score"]),
    ):
        [res] = score_batch(
            [{"response": text, "ground_truth": json.dumps(GT), "data_source": "ifeval", "prompt": ""}],
            workers=1,
        )
        assert [c.description for c in res.met] == met and res.score == pytest.approx(score)
        assert [c.description for c in res.unmet + res.unclear] == unmet
    for d in chosen["draft_unmet"]:
        assert f"missed: {d}" in out
    assert (out_dir / showcase.REPORT_FILE).read_text() in out


def test_resume_trims_examples_of_redone_steps(tmp_path: Path) -> None:
    path = tmp_path / showcase.EXAMPLES_FILE
    showcase.append_examples(path, [{"step": 1, "x": 1}, {"step": 2, "x": 2}, {"step": 3, "x": 3}])
    showcase.trim_examples(path, 2)
    assert [e["step"] for e in showcase.load_examples(path)] == [1, 2]


def _ex(**over: Any) -> dict[str, Any]:
    base = {
        "step": 1,
        "group": 0,
        "instruction": "i",
        "draft": "d",
        "draft_score": 0.5,
        "draft_met": ["a"],
        "draft_unmet": ["b"],
        "hindsight_prompt": "p",
        "revision": "r",
        "revision_score": 0.5,
        "revision_met": ["a"],
        "revision_unmet": ["b"],
        "beat_draft": False,
        "joined": False,
        "outcome": "revision",
    }
    return {**base, **over}


def test_choose_example_prefers_a_kept_revision_that_beat_its_draft() -> None:
    tie_joined = _ex(joined=True)
    beat = _ex(step=2, beat_draft=True, revision_score=1.0, revision_unmet=[])
    both = _ex(step=3, beat_draft=True, joined=True, revision_score=1.0, revision_unmet=[])
    assert showcase.choose_example([tie_joined, beat, both]) is both
    assert showcase.choose_example([tie_joined, beat]) is beat
    assert showcase.choose_example([_ex(), tie_joined]) is tie_joined
    assert showcase.choose_example([]) is None
    text = showcase.format_example(beat)
    assert "beat its draft and did not join the group (revision)" in text and "every constraint met" in text


def test_plot_has_integer_steps_and_marks_kept_revisions() -> None:
    history = [
        {"training/global_step": s, "critic/score/mean": r, "herl/all_met_rate": 0.0, "herl/kept": k}
        for s, r, k in ((1, 0.2, 0.0), (2, 0.4, 1.0), (3, 0.3, 0.0), (4, 0.5, 2.0))
    ]
    fig = reward_figure(history, "t")
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)
    [stars] = [ln for ln in ax.get_lines() if ln.get_label() == "revision kept (HE row)"]
    assert list(stars.get_xdata()) == [2, 4] and list(stars.get_ydata()) == [0.4, 0.5]

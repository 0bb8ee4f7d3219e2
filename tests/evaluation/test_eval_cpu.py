"""``herl eval`` on a CPU: float32 weights whatever the checkpoint's dtype, progress per generation round,
and the revision outcomes per instruction family."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from herl.evaluation.benchmarks import load_benchmark
from herl.evaluation.families import format_families, revision_by_family
from herl.evaluation.generator import TransformersGenerator
from herl.evaluation.runner import EvalSettings, if_scorer, run_eval
from herl.runtime import load_dtype

MINI = Path(__file__).resolve().parent / "ifeval_mini.jsonl"


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved in bfloat16, as SmolLM2's checkpoint is."""
    from transformers import AutoModelForCausalLM

    from herl.engine.tiny import build_tiny_model_dir

    path = build_tiny_model_dir(tmp_path_factory.mktemp("tiny-bf16") / "model", seed=0)
    AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16).save_pretrained(str(path))
    return path


def test_cpu_loads_float32_even_from_a_bf16_checkpoint(bf16_model: Path) -> None:
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(str(bf16_model)).dtype == torch.bfloat16
    gen = TransformersGenerator(str(bf16_model), device="cpu")
    assert next(gen.model.parameters()).dtype == torch.float32
    assert load_dtype("cpu", "bfloat16") is torch.float32
    assert load_dtype("cuda", "auto") == "auto" and load_dtype("cuda", "bfloat16") is torch.bfloat16


def test_progress_bar_per_round_shows_prompts_and_tokens(
    bf16_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = load_benchmark("ifeval", MINI)
    gen = TransformersGenerator(str(bf16_model), device="cpu", batch_size=2)
    calls: list[tuple[int, int]] = []
    gen.generate(["a", "b", "c"], 0.6, 1.0, 6, 0, progress=lambda n, t: calls.append((n, t)))
    assert [n for n, _ in calls] == [2, 1] and all(0 < t <= n * 6 for n, t in calls)

    run_eval("ifeval", records, gen, EvalSettings(revise=1, max_new_tokens=6), scorer=if_scorer(workers=1))
    err = capsys.readouterr().err
    assert "generate: 100%" in err and "4/4" in err and "tok_s=" in err
    assert "revise 1/1" in err


def _row(ids: list[str], draft: list[bool], new: list[bool], draft_score: float, score: float) -> dict:
    return {
        "instruction_id_list": ids,
        "revisions": [
            {"draft_follow": draft, "follow_strict": new, "draft_score": draft_score, "score": score}
        ],
    }


def test_revision_by_family_counts() -> None:
    rows = [
        # misses keywords + length; the revision fixes keywords only: beats its draft
        _row(
            ["keywords:existence", "length_constraints:number_words"], [False, False], [True, False], 0, 0.5
        ),
        # misses keywords; the revision breaks the format it had and fixes nothing
        _row(["keywords:forbidden_words", "detectable_format:title"], [False, True], [False, False], 0.5, 0),
        {"instruction_id_list": ["keywords:existence"], "revisions": []},  # never revised
    ]
    fam = revision_by_family(rows)
    assert fam["keywords"] == {"revisions": 2, "beat": 1, "unmet": 2, "fixed": 1, "kept": 0, "broken": 0}
    assert fam["length_constraints"] == {
        "revisions": 1,
        "beat": 1,
        "unmet": 1,
        "fixed": 0,
        "kept": 0,
        "broken": 0,
    }
    assert fam["detectable_format"] == {
        "revisions": 0,
        "beat": 0,
        "unmet": 0,
        "fixed": 0,
        "kept": 1,
        "broken": 1,
    }
    table = format_families(fam)
    assert "1/2 (50%)" in table and "detectable_format" in table

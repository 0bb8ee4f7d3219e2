"""``herl eval``: a tiny random model end to end, and the revise loop's before/after accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herl.cli import main
from herl.errors import UserError
from herl.evaluation.benchmarks import load_benchmark
from herl.evaluation.generator import Generator
from herl.evaluation.runner import EvalSettings, format_summary, if_scorer, run_eval, write_outputs

HERE = Path(__file__).resolve().parent
MINI = HERE / "ifeval_mini.jsonl"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's tiny random Qwen2 + byte-level BPE with a ChatML template (herl.engine.tiny)."""
    from herl.engine.tiny import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-qwen2") / "model", seed=0)


def test_eval_tiny_model_writes_results_and_summary(tiny_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "--bench",
            "ifeval",
            "--model",
            str(tiny_model),
            "--data",
            str(MINI),
            "--out",
            str(out),
            "--backend",
            "transformers",
            "--max-new-tokens",
            "12",
            "--workers",
            "1",
            "--revise",
            "1",
        ]
    )
    assert rc == 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["1", "2", "3", "4"]
    for r in rows:
        assert isinstance(r["response"], str)
        assert len(r["follow_strict"]) == len(r["follow_loose"]) == len(r["instruction_id_list"])
        assert all(
            a <= b for a, b in zip(r["follow_strict"], r["follow_loose"], strict=True)
        )  # loose >= strict
        assert r["all_strict"] == all(r["follow_strict"])
        assert set(r["initial"]) == {"response", "follow_strict", "follow_loose", "all_strict", "score"}
        assert r["error"] is None
    assert rows[2]["instruction_id_list"] == ["change_case:english_lowercase", "punctuation:no_comma"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark"] == "ifeval" and summary["n_prompts"] == 4
    assert summary["settings"]["temperature"] == 0.6 and summary["settings"]["max_new_tokens"] == 12
    for part in ("initial", "final"):
        assert set(summary[part]) == {
            "prompt_strict",
            "prompt_loose",
            "instruction_strict",
            "instruction_loose",
            "mean_score",
        }
        assert all(0.0 <= v <= 1.0 for v in summary[part].values())
    assert summary["revise"]["per_round"][0]["round"] == 1
    printed = capsys.readouterr().out
    assert (
        "prompt-level" in printed
        and "instruction-level" in printed
        and "after 1 revision round(s)" in printed
    )


class FixingGenerator:
    """Answers with commas and capitals (a chatty first line for prompt 1); when shown a hindsight
    prompt it returns the draft lowercased without commas, which fixes those two constraint kinds."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], float, float, int, int]] = []

    def generate(
        self, prompts: list[str], temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[str]:
        self.calls.append((list(prompts), temperature, top_p, max_new_tokens, seed))
        out = []
        for p in prompts:
            if "[Candidate]" in p:
                draft = p.split("Draft:\n", 1)[1].rsplit("\n\n", 1)[0]
                out.append(draft.lower().replace(",", ""))
            elif "harbour" in p:
                out.append("Sure, here it is:\nThe harbour sleeps under quiet stars.")
            else:
                out.append("Tea is Warm, and Green tea is Calm.")
        return out


def test_revise_loop_accounting() -> None:
    records = load_benchmark("ifeval", MINI)
    assert isinstance(FixingGenerator(), Generator)
    gen = FixingGenerator()
    run = run_eval(
        "ifeval", records, gen, EvalSettings(revise=2, max_new_tokens=64, seed=7), scorer=if_scorer(workers=1)
    )
    s = run.summary
    # before: nothing strictly right; prompt 1 is loosely right (drop the chatty first line)
    assert s["initial"]["prompt_strict"] == 0.0
    assert s["initial"]["prompt_loose"] == pytest.approx(1 / 4)
    assert s["initial"]["instruction_strict"] == 0.0
    # after: prompts 1-3 fixed; prompt 4 (end phrase) cannot be fixed by lowercasing
    assert s["final"]["prompt_strict"] == pytest.approx(3 / 4)
    assert s["final"]["instruction_strict"] == pytest.approx(4 / 5)
    r1, r2 = s["revise"]["per_round"]
    assert r1 == {"round": 1, "attempted": 4, "accepted": 3, "improved": 3, "newly_all_met": 3}
    assert r2 == {"round": 2, "attempted": 1, "accepted": 0, "improved": 0, "newly_all_met": 0}
    # generation settings: HiR temperature, seed advanced per round
    assert [(c[1], c[2], c[3], c[4]) for c in gen.calls] == [
        (0.6, 1.0, 64, 7),
        (0.6, 1.0, 64, 8),
        (0.6, 1.0, 64, 9),
    ]
    hp = gen.calls[1][0][0]
    assert "Unmet:" in hp and "Sure, here it is:" in hp and "Describe a quiet harbour" in hp
    rows = {r["key"]: r for r in run.rows}
    assert rows["1"]["initial"]["all_strict"] is False and rows["1"]["all_strict"] is True
    assert rows["1"]["response"] == "sure here it is:\nthe harbour sleeps under quiet stars."
    assert [h["accepted"] for h in rows["4"]["revisions"]] == [False, False]
    assert rows["4"]["response"] == rows["4"]["initial"]["response"]  # rejected revisions not kept
    assert "after 2 revision round(s)" in format_summary(s)


def test_revise_accept_always_keeps_every_revision(tmp_path: Path) -> None:
    records = load_benchmark("ifeval", MINI)
    run = run_eval(
        "ifeval",
        records,
        FixingGenerator(),
        EvalSettings(revise=1, accept="always"),
        scorer=if_scorer(workers=1),
    )
    assert run.summary["revise"]["per_round"][0]["accepted"] == 4
    rows = {r["key"]: r for r in run.rows}
    assert rows["4"]["response"] == rows["4"]["initial"]["response"].lower().replace(",", "")
    results, summary = write_outputs(tmp_path, run)
    assert (
        len(results.read_text().splitlines()) == 4
        and json.loads(summary.read_text())["revise"]["accept"] == "always"
    )


def test_no_revise_has_no_final_block() -> None:
    records = load_benchmark("ifeval", MINI, limit=2)
    run = run_eval("ifeval", records, FixingGenerator(), EvalSettings(), scorer=if_scorer(workers=1))
    assert "final" not in run.summary and "revise" not in run.summary and len(run.rows) == 2
    assert all(r["revisions"] == [] for r in run.rows)


def test_load_benchmark_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not bundled"):
        load_benchmark("muldimif")
    with pytest.raises(UserError, match="is ifeval data, not muldimif"):
        load_benchmark("muldimif", MINI)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "instruction_id_list": ["a:b", "c:d"], "kwargs": [{}]}\n')
    with pytest.raises(UserError, match="kwargs_length_mismatch"):
        load_benchmark("ifeval", bad)
    with pytest.raises(UserError, match="unknown benchmark"):
        load_benchmark("gsm8k", MINI)


def test_muldimif_user_file(tmp_path: Path) -> None:
    f = tmp_path / "muldimif.jsonl"
    f.write_text(
        json.dumps(
            {
                "id": "m1",
                "conversations": [{"role": "user", "content": "Describe spring."}],
                "constraints": [["Language", "English", "Respond in all lowercase letters"]],
            }
        )
        + "\n"
    )
    (rec,) = load_benchmark("muldimif", f)
    assert rec.key == "m1" and rec.data_source == "muldimif" and rec.prompt == "Describe spring."
    assert rec.ground_truth == {
        "instruction_id_list": [["Language", "English", "Respond in all lowercase letters"]]
    }


def test_bundled_ifeval_and_ifbench_load() -> None:
    # The eval data is fetched by scripts/setup.sh (make test runs it); missing, this test must fail.
    ife = load_benchmark("ifeval")
    ifb = load_benchmark("ifbench")
    assert len(ife) == 541 and ife[0].key == "1000" and ife[0].data_source == "ifeval"
    assert len(ifb) >= 294 and all(r.data_source == "ifbench" for r in ifb)


def test_verl_parquet_prompts(tmp_path: Path) -> None:
    from herl.data.convert import convert

    pq_path = tmp_path / "ifeval.parquet"
    convert("hir16k", MINI, pq_path)
    recs = load_benchmark("ifeval", pq_path, limit=3)
    assert [r.key for r in recs] == ["0", "1", "2"]
    assert recs[2].ground_truth["instruction_id_list"] == [
        "change_case:english_lowercase",
        "punctuation:no_comma",
    ]
    assert recs[0].prompt.startswith("Describe a quiet harbour")

"""``herl data convert`` and ``load_prompts`` on our own fixtures in tests/data/{hir16k,rar}."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from herl.cli import main
from herl.data import load_prompts
from herl.data.convert import convert, convert_records
from herl.errors import UserError

DATA = Path(__file__).resolve().parents[1] / "data"
HIR = DATA / "hir16k" / "sample.jsonl"
HIR_CLEAN = DATA / "hir16k" / "clean.jsonl"
RAR = DATA / "rar" / "sample.jsonl"
RAR_CLEAN = DATA / "rar" / "clean.jsonl"


def test_hir16k_counts_every_record() -> None:
    rows, rep = convert_records("hir16k", HIR)
    assert rep.read == 11 and rep.written == len(rows) == 5
    assert rep.read == rep.written + rep.malformed + sum(rep.unsupported.values())
    assert dict(rep.by_data_source) == {"ifeval": 2, "ifbench": 1, "muldimif": 2}
    assert dict(rep.by_shape) == {"ifeval-like": 3, "constraint-table": 2}
    assert dict(rep.skipped) == {
        "kwargs_length_mismatch": 1,
        "bad_json": 1,
        "missing_prompt": 1,
        "bad_constraint": 1,
    }
    assert dict(rep.unsupported) == {"unsupported_checker_functions": 2}
    assert rep.examples["bad_json"][0].startswith("line 9:")
    text = rep.format()
    assert "unsupported_checker_functions: 2" in text and "e.g. line 8" in text


def test_hir16k_rows_have_verl_shape() -> None:
    rows, _ = convert_records("hir16k", HIR)
    first, inferred, ifbench, table, herl_muldimif = rows
    assert first["prompt"] == [
        {"role": "user", "content": "Describe a lighthouse at dusk. Do not use any commas."}
    ]
    assert first["reward_model"]["style"] == "rule"
    assert json.loads(first["reward_model"]["ground_truth"]) == {
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    }
    # no data_source: all ids are IFEval ids -> ifeval; None kwargs dropped (as the reward does)
    assert inferred["data_source"] == "ifeval"
    assert json.loads(inferred["reward_model"]["ground_truth"])["kwargs"] == [
        {},
        {"num_words": 40, "relation": "at least"},
    ]
    assert ifbench["data_source"] == "ifbench" and ifbench["prompt"][0]["role"] == "system"
    assert ifbench["extra_info"]["question"].startswith("List three fruits")
    gt = json.loads(table["reward_model"]["ground_truth"])
    assert table["data_source"] == "muldimif"
    assert gt["instruction_id_list"][0] == [
        "Length",
        "Words",
        "The response must contain no more than 150 words",
    ]
    assert table["extra_info"]["constraint_pattern"] == "Incorporation"
    assert table["extra_info"]["source_format"] == "constraint-table"
    assert herl_muldimif["data_source"] == "muldimif" and herl_muldimif["extra_info"]["index"] == 4


def test_converted_ground_truth_scores_with_the_if_reward() -> None:
    from herl.rewards.instruction_following import score_if

    rows, _ = convert_records("hir16k", HIR_CLEAN)
    r = rows[0]
    good = score_if(
        "A calm light fades over grey water.", r["reward_model"]["ground_truth"], r["data_source"]
    )
    bad = score_if("Light, water, dusk.", r["reward_model"]["ground_truth"], r["data_source"])
    assert good.error is None and good.all_met and bad.score == 0.0


def test_strict_fails_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    with pytest.raises(UserError, match=r"4 malformed record\(s\).*first: line 8"):
        convert("hir16k", HIR, out, strict=True)
    assert not out.exists() and not list(tmp_path.iterdir())
    # unsupported rows alone do not fail --strict (they are reported)
    clean_plus_unsupported = tmp_path / "u.jsonl"
    lines = HIR.read_text().splitlines()
    clean_plus_unsupported.write_text("\n".join([lines[0], lines[5]]) + "\n")
    rep = convert("hir16k", clean_plus_unsupported, out, strict=True)
    assert rep.written == 1 and dict(rep.unsupported) == {"unsupported_checker_functions": 1}


def test_parquet_output_roundtrip(tmp_path: Path) -> None:
    out = tmp_path / "hir.parquet"
    convert("hir16k", HIR, out)
    table = pq.read_table(out)
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert table.num_rows == 5
    assert load_prompts("verl-parquet", out) == convert_records("hir16k", HIR)[0]


def test_rar_jsonl_and_parquet(tmp_path: Path) -> None:
    rows, rep = convert_records("rar-medicine", RAR)
    assert rep.written == 3 and dict(rep.skipped) == {
        "empty_rubric": 1,
        "bad_rubric_weight": 1,
        "missing_question": 1,
    }
    chest = rows[0]
    assert chest["data_source"] == "rar-medicine" and chest["reward_model"]["style"] == "rubric"
    assert chest["reward_model"]["ground_truth"].startswith("Obtain a 12-lead ECG")
    weights = [r["weight"] for r in chest["extra_info"]["rubric"]]
    assert weights == [5.0, 3.0, 1.0, -2.0]  # pitfalls kept as negative weights
    assert chest["extra_info"]["rubric"][0]["title"] == "ECG first"
    assert rows[2]["extra_info"]["rubric"] == [
        {"description": "States a range of roughly 60 to 100 beats per minute.", "title": "", "weight": 1.0},
        {"description": "Notes that athletes may be lower.", "title": "", "weight": 1.0},
    ]
    # the same records as a parquet source (nested rubric list of structs, as on the Hub)
    src = tmp_path / "rar.parquet"
    records = [json.loads(x) for x in RAR_CLEAN.read_text().splitlines()]
    for r in records:
        r.setdefault("rubric", None)
        r.setdefault("question_source", None)
        r.pop("rubric_list", None)
        r.pop("rubric_count", None)
    records[2]["rubric"] = [{"description": "States 60-100 bpm.", "title": "Range", "weight": 4}]
    pq.write_table(pa.Table.from_pylist(records), src)
    prow, prep = convert_records("rar-medicine", src)
    assert prep.written == 3 and prow[1]["extra_info"]["rubric"][1]["weight"] == -1.0
    assert prep.examples == {}


def test_rar_rows_feed_the_judge() -> None:
    from herl.rewards.judge import JudgeItem

    rows = load_prompts("rar-medicine", RAR_CLEAN)
    item = JudgeItem.from_extra_info(rows[0]["extra_info"], "Get an ECG now.", rows[0]["data_source"])
    assert item.question.startswith("A 45-year-old") and len(item.rubric) == 4


def test_cli_convert_prints_report_and_writes_json(tmp_path: Path, capsys) -> None:
    out, rep = tmp_path / "r.parquet", tmp_path / "rep.json"
    assert (
        main(["data", "convert", "--from", "rar-medicine", str(RAR), "--out", str(out), "--report", str(rep)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "wrote 3 rows" in printed and "bad_rubric_weight: 1" in printed and "e.g. line 5" in printed
    assert json.loads(rep.read_text())["skipped"]["missing_question"] == 1
    assert pq.read_table(out).num_rows == 3


def test_cli_strict_is_one_line_error(tmp_path: Path, capsys) -> None:
    rc = main(
        ["data", "convert", "--from", "hir16k", str(HIR), "--out", str(tmp_path / "x.parquet"), "--strict"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "herl data: error: --strict: 4 malformed" in err and "Traceback" not in err


def test_cli_missing_input_and_empty(tmp_path: Path, capsys) -> None:
    assert (
        main(["data", "convert", "--from", "hir16k", str(tmp_path / "nope.jsonl"), "--out", "x.parquet"]) == 2
    )
    assert "input file not found" in capsys.readouterr().err
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="no usable records"):
        convert("hir16k", empty, tmp_path / "o.parquet")


def test_load_prompts_clean_sources() -> None:
    hir = load_prompts("hir16k-jsonl", HIR_CLEAN)
    assert [r["data_source"] for r in hir] == ["ifeval", "ifeval", "ifbench", "muldimif", "muldimif"]
    assert all(r["prompt"][-1]["role"] == "user" for r in hir)
    assert len(load_prompts("rar-medicine", RAR_CLEAN)) == 3


def test_load_prompts_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"malformed record\(s\).*line 8"):
        load_prompts("hir16k-jsonl", HIR)
    with pytest.raises(UserError, match="unknown prompt format 'csv'"):
        load_prompts("csv", HIR)
    with pytest.raises(UserError, match="prompt file not found"):
        load_prompts("verl-parquet", tmp_path / "missing.parquet")
    p = tmp_path / "nocol.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"prompt": [{"role": "user", "content": "hi"}], "data_source": "ifeval"}]), p
    )
    with pytest.raises(UserError, match=r"missing column\(s\) reward_model"):
        load_prompts("verl-parquet", p)
    p2 = tmp_path / "badrow.parquet"
    good = {
        "prompt": [{"role": "user", "content": "hi"}],
        "data_source": "ifeval",
        "reward_model": {"style": "rule", "ground_truth": "{}"},
    }
    bad = {"prompt": [], "data_source": "ifeval", "reward_model": {"style": "rule", "ground_truth": "{}"}}
    pq.write_table(pa.Table.from_pylist([good, bad]), p2)
    with pytest.raises(UserError, match=r"row 1: column 'prompt'"):
        load_prompts("verl-parquet", p2)
    p3 = tmp_path / "rar_no_rubric.parquet"
    pq.write_table(
        pa.Table.from_pylist([{**good, "data_source": "rar-medicine", "extra_info": {"question": "q"}}]), p3
    )
    with pytest.raises(UserError, match=r"extra_info\.rubric"):
        load_prompts("verl-parquet", p3)
    notpq = tmp_path / "x.parquet"
    notpq.write_text("not parquet")
    with pytest.raises(UserError, match="not a readable parquet"):
        load_prompts("verl-parquet", notpq)

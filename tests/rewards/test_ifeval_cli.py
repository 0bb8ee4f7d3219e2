"""``herl reward ifeval`` on a tiny hand-checked fixture (see tests/data/ifeval_small/README.md)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from herl.errors import UserError
from herl.rewards import checkers, cli, ifeval_eval

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "ifeval_small"


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="herl")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_accuracies_match_hand_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    code = run_cli(
        [
            "reward",
            "ifeval",
            "--input-data",
            str(FIXTURE / "input_data.jsonl"),
            "--responses",
            str(FIXTURE / "responses.jsonl"),
            "--out",
            str(out),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    strict, loose = _rows(out / "eval_results_strict.jsonl"), _rows(out / "eval_results_loose.jsonl")
    assert [r["follow_instruction_list"] for r in strict] == [
        [True, True],
        [True, False],
        [False],
        [True, False],
    ]
    assert [r["follow_instruction_list"] for r in loose] == [
        [True, True],
        [True, True],
        [False],
        [True, True],
    ]
    assert [r["follow_all_instructions"] for r in strict] == [True, False, False, False]
    assert set(strict[0]) == {
        "instruction_id_list",
        "prompt",
        "response",
        "follow_all_instructions",
        "follow_instruction_list",
    }
    text = capsys.readouterr().out
    assert "prompt-level: 0.25\n" in text and f"instruction-level: {4 / 7}\n" in text
    assert "prompt-level: 0.75\n" in text and f"instruction-level: {6 / 7}\n" in text
    assert "prompt-level strict: 0.2500  instruction-level strict: 0.5714" in text
    assert "prompt-level loose:  0.7500  instruction-level loose:  0.8571" in text


def test_same_verdicts_as_reference_functions() -> None:
    utils = checkers.import_isolated(checkers.IFEVAL_PARENT, "lm_eval.tasks.ifeval.utils")
    inputs = ifeval_eval.read_inputs(FIXTURE / "input_data.jsonl")
    responses = ifeval_eval.read_responses(FIXTURE / "responses.jsonl")
    strict, loose = ifeval_eval.evaluate(inputs, responses, workers=1)
    for inp, s, lo in zip(inputs, strict, loose, strict=True):
        ref_in = utils.InputExample(
            key=inp.key, instruction_id_list=inp.instruction_id_list, prompt=inp.prompt, kwargs=inp.kwargs
        )
        assert (
            utils.test_instruction_following_strict(ref_in, responses[inp.prompt]).follow_instruction_list
            == s.follow_instruction_list
        )
        assert (
            utils.test_instruction_following_loose(ref_in, responses[inp.prompt]).follow_instruction_list
            == lo.follow_instruction_list
        )


def test_loose_variants_are_the_reference_eight() -> None:
    v = ifeval_eval.loose_variants("*a*\nb\n*c*")
    assert v == ["*a*\nb\n*c*", "a\nb\nc", "b\n*c*", "*a*\nb", "b", "b\nc", "a\nb", "b"]


def test_missing_prompt_names_it(tmp_path: Path) -> None:
    responses = tmp_path / "responses.jsonl"
    rows = _rows(FIXTURE / "responses.jsonl")
    responses.write_text(
        "".join(json.dumps(r) + "\n" for r in rows if not r["prompt"].startswith("Describe"))
    )
    with pytest.raises(UserError, match=r"no response for prompt \(key 3\): 'Describe a forest"):
        run_cli(
            [
                "reward",
                "ifeval",
                "--input-data",
                str(FIXTURE / "input_data.jsonl"),
                "--responses",
                str(responses),
                "--out",
                str(tmp_path / "o"),
                "--workers",
                "1",
            ]
        )


def test_bad_input_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        ifeval_eval.read_inputs(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": 1, "prompt": "p"}\n')
    with pytest.raises(UserError, match="lacks instruction_id_list, kwargs"):
        ifeval_eval.read_inputs(bad)
    bad.write_text("{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: not valid JSON"):
        ifeval_eval.read_responses(bad)
    unknown = tmp_path / "in.jsonl"
    shutil.copy(FIXTURE / "input_data.jsonl", unknown)
    unknown.write_text(unknown.read_text().replace("punctuation:no_comma", "punctuation:nope", 1))
    with pytest.raises(UserError, match="unknown IFEval instruction id 'punctuation:nope'"):
        ifeval_eval.evaluate(
            ifeval_eval.read_inputs(unknown),
            ifeval_eval.read_responses(FIXTURE / "responses.jsonl"),
            workers=1,
        )

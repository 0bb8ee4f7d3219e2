"""Our MulDimIF regex checkers: common phrasings parse to the right clauses; unparseable -> unclear."""

from __future__ import annotations

import logging

import pytest

from herl.rewards import muldimif


@pytest.mark.parametrize(
    ("requirement", "clauses"),
    [
        ("The response must contain no more than 150 words", ("words <= 150",)),
        ("Answer in between 50 and 100 words.", ("words in [50, 100]",)),
        ("Use exactly three sentences.", ("sentences == 3",)),
        ("The answer should have at least 2 paragraphs", ("paragraphs >= 2",)),
        ("Keep it under 30 words", ("words < 30",)),
        ("The number of words should not exceed 100", ("words <= 100",)),
        ("Each paragraph must have at most 20 words", ("each paragraph: words <= 20",)),
        ("The output must be in JSON format", ("valid JSON",)),
        ("Use Markdown with at least 2 headings", ("headings >= 2",)),
        ("Present the data in a table with 3 rows", ("has a Markdown table", "table rows == 3")),
        ('Include the keywords "apple" and "banana"', ("includes 'apple'", "includes 'banana'")),
        ('Do not use the word "very"', ("excludes 'very'",)),
        ('Start your response with "Dear"', ("starts with 'Dear'",)),
        ('End your answer with "Best regards"', ("ends with 'Best regards'",)),
        ("End your response with a question mark", ("ends with question mark",)),
        ("Respond in English using all lowercase letters", ("all lowercase", "English")),
        ("The answer must be written in Chinese", ("Chinese",)),
        ("Do not use any commas", ("no commas",)),
        ('Mention "AI" at least 3 times', ("'AI' >= 3 times",)),
    ],
)
def test_parse_common_forms(requirement: str, clauses: tuple[str, ...]) -> None:
    assert muldimif.parse_requirement("X", "Y", requirement).clauses == clauses


@pytest.mark.parametrize(
    ("requirement", "response", "expected"),
    [
        ("The response must contain no more than 5 words", "one two three four five", True),
        ("The response must contain no more than 5 words", "one two three four five six", False),
        ("Use exactly three sentences.", "One. Two! Three?", True),
        ("Use exactly three sentences.", "One. Two.", False),
        ("The answer should have at least 2 paragraphs", "First.\n\nSecond.", True),
        ("The answer should have at least 2 paragraphs", "Only one.\nStill one.", False),
        ("Each paragraph must have at most 3 words", "a b c\n\nd e", True),
        ("Each paragraph must have at most 3 words", "a b c\n\nd e f g", False),
        ("The output must be in JSON format", '```json\n{"a": [1, 2]}\n```', True),
        ("The output must be in JSON format", "{'a': 1}", False),
        ("Present the data in a table with 2 rows", "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |", True),
        ("Present the data in a table with 2 rows", "| a | b |\n|---|---|\n| 1 | 2 |", False),
        ("Use Markdown with at least 2 headings", "# One\ntext\n## Two\ntext", True),
        ("Use Markdown with at least 2 headings", "# One\ntext", False),
        ("Use bullet points", "- a\n- b", True),
        ("Use bullet points", "a, b", False),
        ('Include the keywords "apple" and "banana"', "apple and banana", True),
        ('Include the keywords "apple" and "banana"', "apple only (pineapple is not banana-free)", True),
        ('Include the keywords "apple" and "banana"', "pineapple only", False),
        ('Do not use the word "very"', "It is extremely good.", True),
        ('Do not use the word "very"', "It is Very good.", False),
        ('Start your response with "Dear"', "Dear team, hello.", True),
        ('Start your response with "Dear"', "Hello dear team.", False),
        ("End your response with a question mark", "Is it?", True),
        ("End your response with a question mark", "It is.", False),
        ("Respond in English using all lowercase letters", "this is a plain english answer.", True),
        ("Respond in English using all lowercase letters", "This is a plain English answer.", False),
        ("The answer must be written in Chinese", "这是一个中文回答。", True),
        ("The answer must be written in Chinese", "This is English.", False),
        ("Do not use any commas", "no commas here", True),
        ("Do not use any commas", "one, two", False),
        ('Mention "AI" at least 2 times', "AI is here. AI is there.", True),
        ('Mention "AI" at least 2 times', "AI is here.", False),
    ],
)
def test_verdicts(requirement: str, response: str, expected: bool) -> None:
    followed, note = muldimif.check("Cat", "Sub", requirement, response)
    assert followed is expected, note


def test_no_more_than_is_not_also_more_than() -> None:
    parsed = muldimif.parse_requirement("Length", "Words", "no more than 10 words and no less than 2 words")
    assert parsed.clauses == ("words <= 10", "words >= 2")


def test_unparseable_is_unclear_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    muldimif._warned.clear()
    with caplog.at_level(logging.WARNING, logger="herl.rewards.muldimif"):
        for _ in range(3):
            followed, note = muldimif.check("Style", "Tone", "Be polite and warm", "Hello!")
            assert followed is None and note == muldimif.UNPARSED_NOTE
    assert sum("cannot parse" in r.message for r in caplog.records) == 1


def test_empty_response_fails_parsed_constraint() -> None:
    assert muldimif.check("Format", "Json", "Output JSON", "  ")[0] is False


def test_counts() -> None:
    assert muldimif.count_words("Hello, world! 你好") == 4
    assert muldimif.count_sentences("One. Two? Three!") == 3
    assert muldimif.count_paragraphs("a\n\n\nb\n \nc") == 3
    assert muldimif.count_bullets("- a\n* b\n1. c\nd") == 3

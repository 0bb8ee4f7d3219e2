"""Our MulDimIF checkers: one verdict per ``[category, subcategory, requirement_text]`` triple.

MulDimIF's released checkers are not packaged anywhere, so we parse the requirement *text* with regexes
for the common phrasings (counts of words / sentences / paragraphs / characters with at most / at least /
exactly / between, JSON / Markdown / table / bullet formats, starts / ends with, includes / excludes
keywords, English / Chinese, letter case, commas). Every clause we recognise becomes a predicate; the
constraint is followed when all of them hold. A requirement in which we recognise nothing gets the verdict
``None`` ("unclear") with a note, and is logged once, instead of a guessed pass or fail: an honest
"cannot judge" counts as not met in the score and shows up as unclear in the hindsight prompt.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

UNPARSED_NOTE = "unparsed MulDimIF requirement: no recognised clause; cannot judge"

_NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "a single": 1,
    "single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "a hundred": 100,
    "one hundred": 100,
}
_NUM = (
    r"\b(\d[\d,]*|" + "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS), key=len, reverse=True)) + r")\b"
)

_UNITS: dict[str, str] = {
    "words": r"words?|english words|tokens?",
    "sentences": r"sentences?",
    "paragraphs": r"paragraphs?",
    "characters": r"characters?|chars?|chinese characters|汉字|字",
    "lines": r"lines?",
    "bullets": r"bullet points?|bullets?|list items?",
    "headings": r"headings?|headers?|titles?",
}

_AT_MOST = (
    r"\b(?:at most|no more than|not more than|not exceed(?:ing)?|fewer than|less than|under|below|"
    r"a maximum of|maximum of|up to|within|no longer than|shorter than)"
)
_AT_LEAST = (
    r"\b(?:at least|no less than|no fewer than|not less than|more than|over|above|a minimum of|"
    r"minimum of|longer than|exceed(?:ing)?)"
)
_EXACTLY = r"\b(?:exactly|precisely|just|only)"
_STRICT_MOST = ("fewer", "less", "under", "below", "shorter")
_STRICT_LEAST = ("more", "over", "above", "longer", "exceed")
# A count clause scoped to each segment ("each paragraph must have at most 50 words").
_PER = re.compile(
    r"\b(?:each|every|per|all)\s+(sentence|paragraph|line|bullet point|bullet|item|section)s?\b"
)

_QUOTE = r"[\"“”'‘’「」『』`]"
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|‘([^’]+)’|「([^」]+)」|'([^']+)'(?![a-z])|`([^`]+)`")


def _num(text: str) -> int:
    text = text.strip().lower().replace(",", "")
    return int(text) if text.isdigit() else _NUMBER_WORDS[text]


# ---------------------------------------------------------------------------------------------- measures

_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_LATIN_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")


def count_words(text: str) -> int:
    """Latin words plus CJK characters (each Chinese character is one word, as MulDimIF's Chinese items)."""
    return len(_LATIN_WORD.findall(text)) + len(_CJK.findall(text))


def count_sentences(text: str) -> int:
    parts = re.split(r"(?<=[.!?。！？])\s*|\n+", text.strip())
    return len([p for p in parts if re.search(r"\w", p)])


def count_paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()])


def count_characters(text: str) -> int:
    return len(re.sub(r"\s", "", text))


def count_lines(text: str) -> int:
    return len([line for line in text.splitlines() if line.strip()])


_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+\S", re.M)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S", re.M)


def count_bullets(text: str) -> int:
    return len(_BULLET.findall(text))


def count_headings(text: str) -> int:
    return len(_HEADING.findall(text))


_COUNTERS: dict[str, Callable[[str], int]] = {
    "words": count_words,
    "sentences": count_sentences,
    "paragraphs": count_paragraphs,
    "characters": count_characters,
    "lines": count_lines,
    "bullets": count_bullets,
    "headings": count_headings,
}


def _strip_fence(text: str) -> str:
    match = re.fullmatch(r"\s*```[a-zA-Z]*\s*\n(.*?)\n?```\s*", text, re.S)
    return match.group(1) if match else text.strip()


def is_json(text: str) -> bool:
    try:
        json.loads(_strip_fence(text))
    except ValueError:
        return False
    return True


def has_markdown_table(text: str) -> bool:
    return bool(re.search(r"^\s*\|?.+\|.+\n\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$", text, re.M))


def table_rows(text: str) -> int:
    """Data rows of the first Markdown table (header and separator excluded)."""
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        if "|" in lines[i] and re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*", lines[i + 1]):
            rows = 0
            for line in lines[i + 2 :]:
                if "|" not in line:
                    break
                rows += 1
            return rows
    return 0


def has_markdown(text: str) -> bool:
    return bool(
        _HEADING.search(text)
        or _BULLET.search(text)
        or re.search(r"\*\*[^*]+\*\*", text)
        or has_markdown_table(text)
        or "```" in text
    )


def cjk_ratio(text: str) -> float:
    letters = re.findall(r"[A-Za-z]|[\u4e00-\u9fff]", text)
    return (sum(1 for c in letters if _CJK.match(c)) / len(letters)) if letters else 0.0


# ---------------------------------------------------------------------------------------------- parsing

Predicate = Callable[[str], bool]


@dataclass(frozen=True)
class ParsedRequirement:
    """The clauses recognised in one requirement (for tests and debugging)."""

    clauses: tuple[str, ...]
    predicates: tuple[Predicate, ...]


_SEGMENTERS: dict[str, Callable[[str], list[str]]] = {
    "sentence": lambda t: [x for x in re.split(r"(?<=[.!?。！？])\s+|\n+", t.strip()) if re.search(r"\w", x)],
    "paragraph": lambda t: [x for x in re.split(r"\n\s*\n", t.strip()) if x.strip()],
    "line": lambda t: [x for x in t.splitlines() if x.strip()],
    "bullet": lambda t: [m.group(0) for m in re.finditer(r"^\s*(?:[-*+•]|\d+[.)])\s+.*$", t, re.M)],
    "section": lambda t: [x for x in re.split(r"^\s{0,3}#{1,6}\s+.*$", t, flags=re.M) if x.strip()],
}
_SEGMENTERS["bullet point"] = _SEGMENTERS["item"] = _SEGMENTERS["bullet"]


def _scoped(
    name: str,
    counter: Callable[[str], int],
    test: Callable[[int], bool],
    scope: str | None,
) -> tuple[str, Predicate]:
    if scope is None:
        return name, lambda t: test(counter(t))
    segment = _SEGMENTERS[scope]

    def each(t: str) -> bool:
        parts = segment(t)
        return bool(parts) and all(test(counter(p)) for p in parts)

    return f"each {scope}: {name}", each


def _count_clauses(req: str) -> list[tuple[str, Predicate]]:
    """Count clauses in a lower-cased requirement; "no more than" never also reads as "more than"."""
    out: list[tuple[str, Predicate]] = []
    spans: list[tuple[int, int]] = []

    def taken(m: re.Match[str]) -> bool:
        return any(s <= m.start() < e or s < m.end() <= e for s, e in spans)

    def scope_of(start: int) -> str | None:
        clause_start = max(req.rfind(".", 0, start), req.rfind(";", 0, start)) + 1
        per = _PER.search(req, clause_start, start)
        return per.group(1) if per else None

    for unit, unit_re in _UNITS.items():
        counter = _COUNTERS[unit]
        u = rf"(?:{unit_re})\b"
        found: list[tuple[re.Match[str], str, Callable[[int], bool]]] = []
        for pattern in (
            rf"\bbetween\s+{_NUM}\s+(?:and|to)\s+{_NUM}\s+(?:\w+\s+)?{u}",
            rf"\b{_NUM}\s*(?:-|–|to)\s*{_NUM}\s+(?:\w+\s+)?{u}",
        ):
            for m in re.finditer(pattern, req):
                lo, hi = _num(m.group(1)), _num(m.group(2))
                found.append((m, f"{unit} in [{lo}, {hi}]", lambda c, lo=lo, hi=hi: lo <= c <= hi))
        for m in re.finditer(rf"(?:{_AT_MOST})\s+{_NUM}\s+(?:\w+\s+)?{u}", req):
            if re.search(r"(?:\bno|\bnot)\s+$", req[: m.start()]):
                continue  # "no less than" / "not fewer than" are lower bounds, read below
            n = _num(m.group(1))
            if m.group(0).startswith(_STRICT_MOST):
                found.append((m, f"{unit} < {n}", lambda c, n=n: c < n))
            else:
                found.append((m, f"{unit} <= {n}", lambda c, n=n: c <= n))
        for m in re.finditer(rf"(?:{_AT_LEAST})\s+{_NUM}\s+(?:\w+\s+)?{u}", req):
            if re.search(r"(?:\bno|\bnot|n't)\s+$", req[: m.start()]):
                continue  # "no more than" / "not exceed" were read as an upper bound above
            n = _num(m.group(1))
            if m.group(0).startswith(_STRICT_LEAST):
                found.append((m, f"{unit} > {n}", lambda c, n=n: c > n))
            else:
                found.append((m, f"{unit} >= {n}", lambda c, n=n: c >= n))
        for m in re.finditer(rf"(?:{_EXACTLY}\s+)?{_NUM}\s+(?:\w+\s+)?{u}", req):
            before = req[max(0, m.start() - 40) : m.start()]
            if re.search(rf"(?:{_AT_MOST}|{_AT_LEAST}|\bbetween|\band|\bto|-|–)\s*$", before):
                continue
            n = _num(m.group(1))
            exact = re.match(_EXACTLY, m.group(0)) or re.search(
                r"\b(?:contain|contains|consist of|consists of|have|has|be|use|write|in|of|with|composed of|"
                r"made of|include|includes|provide|list|give)\s+(?:\w+\s+)?$",
                before,
            )
            if exact:
                found.append((m, f"{unit} == {n}", lambda c, n=n: c == n))
        # "the number of words should not exceed 100", "word count must be at least 50"
        lead = rf"(?:\bnumber of\s+{u}|\b{unit.rstrip('s')}\s+count\b)"
        for m in re.finditer(rf"{lead}[^.;\d]{{0,30}}?\s{_NUM}\b", req):
            qual = req[m.start() : m.end()]
            n = _num(m.group(1))
            if re.search(
                r"\b(?:no|not)\s+(?:more|exceed|greater|longer)|at most|less than|fewer than|under"
                r"|maximum|up to|below",
                qual,
            ):
                strict = re.search(r"(?<!no )(?<!not )\b(?:less|fewer) than|under|below", qual)
                found.append(
                    (
                        m,
                        f"{unit} {'<' if strict else '<='} {n}",
                        (lambda c, n=n: c < n) if strict else (lambda c, n=n: c <= n),
                    )
                )
            elif re.search(r"at least|no less|no fewer|not less|minimum|more than|exceed|greater|over", qual):
                strict = re.search(r"(?<!no )(?<!not )\b(?:more|greater) than|exceed|over", qual)
                found.append(
                    (
                        m,
                        f"{unit} {'>' if strict else '>='} {n}",
                        (lambda c, n=n: c > n) if strict else (lambda c, n=n: c >= n),
                    )
                )
            elif re.search(r"exactly|\bbe\b|\bis\b|equal", qual):
                found.append((m, f"{unit} == {n}", lambda c, n=n: c == n))
        for m, name, test in found:
            if taken(m):
                continue
            spans.append((m.start(), m.end()))
            scope = scope_of(m.start())
            if scope is not None and scope.startswith(unit.rstrip("s")):
                scope = None  # "each paragraph ... 3 paragraphs" counts paragraphs overall
            out.append(_scoped(name, counter, test, scope))
    return out


def _quoted(clause: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _QUOTED.finditer(clause)]


_NEG = re.compile(
    r"\b(?:not|never|avoid|avoids|avoiding|without|exclude|excluding|excludes|no|nor|"
    r"forbid|forbidden|prohibited|refrain)\b|不得|不要|不能|禁止|避免"
)


def _sentences_of_requirement(req: str) -> list[str]:
    # split into clauses on ";" and sentence ends, keeping quoted material intact enough for our use
    return [
        c
        for c in re.split(r"(?<=[.;])\s+|;\s*|(?:,\s*)?\band\s+(?=(?:must|should|do|does|it|the)\b)", req)
        if c.strip()
    ]


def _keyword_clauses(req: str) -> list[tuple[str, Predicate]]:
    out: list[tuple[str, Predicate]] = []
    for clause in _sentences_of_requirement(req):
        words = _quoted(clause)
        if not words:
            continue
        low = clause.lower()
        if re.search(r"\b(?:start|begin|open)s?\b|\bstarting\b|\bbeginning\b|开头", low) and not re.search(
            r"\b(?:each|every)\b", low
        ):
            target = words[0]
            out.append(
                (
                    f"starts with {target!r}",
                    lambda t, w=target: _strip_fence(t).lstrip(" #*\"'").lower().startswith(w.lower()),
                )
            )
            continue
        if re.search(
            r"\b(?:end|ends|ending|conclude|concludes|concluding|finish|finishes|close|closes)\b|结尾", low
        ):
            target = words[0]
            out.append(
                (
                    f"ends with {target!r}",
                    lambda t, w=target: t.strip().rstrip(" *\"'").lower().endswith(w.lower().rstrip(" *\"'")),
                )
            )
            continue
        if not re.search(
            r"\b(?:include|includes|including|contain|contains|containing|mention|mentions|use|"
            r"uses|using|appear|appears|feature|features|incorporate|incorporates|keywords?|words?|"
            r"phrases?|terms?)\b|包含|使用|出现",
            low,
        ):
            continue
        negated = bool(_NEG.search(low))
        freq = re.search(rf"(?:({_AT_LEAST})|({_AT_MOST})|(exactly))?\s*{_NUM}\s+times?\b", low)
        for w in words:
            pat = re.compile(rf"(?<!\w){re.escape(w)}(?!\w)", re.I)
            if negated:
                out.append((f"excludes {w!r}", lambda t, p=pat: p.search(t) is None))
            elif freq:
                n = _num(freq.group(4))
                if freq.group(2):
                    out.append((f"{w!r} <= {n} times", lambda t, p=pat, n=n: len(p.findall(t)) <= n))
                elif freq.group(3):
                    out.append((f"{w!r} == {n} times", lambda t, p=pat, n=n: len(p.findall(t)) == n))
                else:
                    out.append((f"{w!r} >= {n} times", lambda t, p=pat, n=n: len(p.findall(t)) >= n))
            else:
                out.append((f"includes {w!r}", lambda t, p=pat: p.search(t) is not None))
    return out


def _format_clauses(req: str) -> list[tuple[str, Predicate]]:
    low = req.lower()
    out: list[tuple[str, Predicate]] = []
    negated = bool(re.search(r"\b(?:not|no|without|avoid)\b[^.]{0,40}\b(?:markdown|json|table|bullet)", low))
    if "json" in low and not negated:
        out.append(("valid JSON", is_json))
    if "table" in low and not negated:
        out.append(("has a Markdown table", has_markdown_table))
        m = re.search(rf"(?:({_AT_LEAST})|({_AT_MOST})|(exactly))?\s*{_NUM}\s+(?:data\s+)?rows?\b", low)
        if m:
            n = _num(m.group(4))
            if m.group(1):
                out.append((f"table rows >= {n}", lambda t, n=n: table_rows(t) >= n))
            elif m.group(2):
                out.append((f"table rows <= {n}", lambda t, n=n: table_rows(t) <= n))
            else:
                out.append((f"table rows == {n}", lambda t, n=n: table_rows(t) == n))
    if re.search(r"bullet|unordered list|list items?", low):
        if negated:
            out.append(("no bullet points", lambda t: count_bullets(t) == 0))
        elif not any(c.startswith("bullets") for c, _ in _count_clauses(low)):
            out.append(("has bullet points", lambda t: count_bullets(t) > 0))
    if "markdown" in low:
        if negated:
            out.append(("no Markdown", lambda t: not has_markdown(t)))
        elif re.search(r"heading|header|title|#", low):
            if not any(c.startswith("headings") for c, _ in _count_clauses(low)):
                out.append(("has Markdown headings", lambda t: count_headings(t) > 0))
        elif re.search(r"\bbold\b", low):
            out.append(("has bold text", lambda t: re.search(r"\*\*[^*\n]+\*\*|__[^_\n]+__", t) is not None))
        elif not out:
            out.append(("uses Markdown", has_markdown))
    return out


def _language_clauses(req: str) -> list[tuple[str, Predicate]]:
    low = req.lower()
    out: list[tuple[str, Predicate]] = []
    if re.search(
        r"\b(?:all|entirely|only|completely)\b[^.]{0,30}\blower[- ]?case\b|\blower[- ]?case\s+letters?\s+only",
        low,
    ):
        out.append(("all lowercase", lambda t: t == t.lower() and any(c.isalpha() for c in t)))
    elif re.search(r"\b(?:all|entirely|only|completely)\b[^.]{0,30}\b(?:upper[- ]?case|capital)", low):
        out.append(("all uppercase", lambda t: t == t.upper() and any(c.isalpha() for c in t)))
    elif re.search(r"\btitle case\b|capitali[sz]e the first letter of (?:each|every) word", low):
        out.append(("title case", _is_title_case))
    if re.search(r"\b(?:in|use|using|written in|respond in|answer in)\s+(?:\w+\s+)?chinese\b|中文|汉语", low):
        if "traditional" in low:
            out.append(("Traditional Chinese", lambda t: _detect(t) == "zh-tw"))
        else:
            out.append(("Chinese", lambda t: cjk_ratio(t) > 0.5))
    elif re.search(
        r"\b(?:in|use|using|written in|respond in|answer in)\s+(?:\w+\s+)?english\b|英文|英语", low
    ):
        out.append(("English", lambda t: cjk_ratio(t) < 0.05 and _detect(t) == "en"))
    return out


def _punctuation_clauses(req: str) -> list[tuple[str, Predicate]]:
    low = req.lower()
    out: list[tuple[str, Predicate]] = []
    if re.search(r"\b(?:no|not|without|avoid)\b[^.]{0,30}\bcommas?\b", low):
        out.append(("no commas", lambda t: "," not in t and "，" not in t))
    marks = {"question mark": "?？", "exclamation": "!！", "period": ".。", "full stop": ".。"}
    if re.search(r"\b(?:end|ends|ending|conclude|concludes|finish)\b", low) and not _quoted(req):
        for name, chars in marks.items():
            if name in low:
                if re.search(r"\b(?:each|every|all)\s+sentences?\b", low):
                    out.append(
                        (
                            f"every sentence ends with {name}",
                            lambda t, c=chars: all(
                                s.rstrip()[-1:] in c
                                for s in re.split(r"(?<=[.!?。！？])\s+|\n+", t.strip())
                                if s.strip()
                            ),
                        )
                    )
                else:
                    out.append((f"ends with {name}", lambda t, c=chars: t.strip().rstrip("*\"'”")[-1:] in c))
                break
    return out


def _detect(text: str) -> str:
    import langdetect

    from herl.rewards.checkers import langdetect_ready

    langdetect_ready()  # seeded, and its profile table built before threads race to build it
    try:
        return str(langdetect.detect(text))
    except langdetect.LangDetectException:
        return ""


def _is_title_case(text: str) -> bool:
    words = _LATIN_WORD.findall(text)
    small = {"a", "an", "the", "and", "or", "but", "of", "in", "on", "at", "to", "for", "by", "with", "as"}
    return bool(words) and all(w[0].isupper() or w.lower() in small or w[0].isdigit() for w in words)


def parse_requirement(category: str, subcategory: str, requirement: str) -> ParsedRequirement:
    """Recognise every clause we can in one requirement (all families tried; the text decides)."""
    req = " ".join(requirement.split())
    clauses: list[tuple[str, Predicate]] = []
    clauses += _count_clauses(req.lower())
    clauses += _format_clauses(req)
    clauses += _keyword_clauses(req)
    clauses += _language_clauses(req)
    clauses += _punctuation_clauses(req)
    seen: dict[str, Predicate] = {}
    for name, pred in clauses:
        seen.setdefault(name, pred)
    return ParsedRequirement(tuple(seen), tuple(seen.values()))


_warned: set[tuple[str, str, str]] = set()


def check(category: str, subcategory: str, requirement: str, response: str) -> tuple[bool | None, str | None]:
    """The verdict of one MulDimIF constraint: (followed, note). ``None`` means we could not judge it."""
    parsed = parse_requirement(category, subcategory, requirement)
    if not parsed.predicates:
        key = (category, subcategory, requirement)
        if key not in _warned and len(_warned) < 10_000:
            _warned.add(key)
            log.warning(
                "MulDimIF %s_%s: cannot parse requirement %r; verdict is 'unclear'",
                category,
                subcategory,
                requirement,
            )
        return None, UNPARSED_NOTE
    if not response.strip():
        return False, "; ".join(parsed.clauses)
    return all(p(response) for p in parsed.predicates), "; ".join(parsed.clauses)


def describe(category: str, subcategory: str, requirement: str) -> str:
    """MulDimIF's description form: ``"<Category> - <Subcategory>: <requirement>"``."""
    return f"{category} - {subcategory}: {requirement}"

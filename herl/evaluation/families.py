"""Where test-time revision helps: revision outcomes per instruction family (``keywords``, ``length_constraints``…).

The family of a constraint is its checker id before the colon (IFEval's ``detectable_format:title`` →
``detectable_format``). For every revision of an evaluation (``results.jsonl`` rows, ``revisions``):

- ``revisions``: revisions whose draft missed at least one constraint of the family;
- ``beat``: of those, how many scored strictly higher than their draft (the hindsight success rate);
- ``unmet`` / ``fixed``: constraints of the family the draft missed, and how many the revision met;
- ``kept`` / ``broken``: constraints of the family the draft met, and how many the revision lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def family(instruction_id: str) -> str:
    return instruction_id.split(":", 1)[0]


def revision_by_family(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per family (see the module doc), families sorted by name."""
    out: dict[str, dict[str, int]] = {}

    def slot(fam: str) -> dict[str, int]:
        return out.setdefault(
            fam, dict.fromkeys(("revisions", "beat", "unmet", "fixed", "kept", "broken"), 0)
        )

    for row in rows:
        ids = list(row.get("instruction_id_list") or [])
        for rev in row.get("revisions") or []:
            draft, new = rev.get("draft_follow"), rev.get("follow_strict")
            if draft is None or new is None or len(draft) != len(ids) or len(new) != len(ids):
                continue  # a scoring error left no per-constraint verdicts
            missed = set()
            for cid, before, after in zip(ids, draft, new, strict=True):
                s = slot(family(cid))
                if before:
                    s["kept"] += 1
                    s["broken"] += not after
                else:
                    missed.add(family(cid))
                    s["unmet"] += 1
                    s["fixed"] += bool(after)
            for fam in missed:
                s = slot(fam)
                s["revisions"] += 1
                s["beat"] += float(rev.get("score", 0.0)) > float(rev.get("draft_score", 0.0))
    return dict(sorted(out.items()))


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "—"


def format_families(by_family: Mapping[str, Mapping[str, int]]) -> str:
    """A fixed-width table: family, revisions that beat their draft, unmet fixed, met broken."""
    head = f"  {'family':<22}{'beat its draft':>18}{'unmet → met':>18}{'met → unmet':>18}"
    lines = ["  revisions per instruction family (strict):", head]
    for fam, c in by_family.items():
        lines.append(
            f"  {fam:<22}{_pct(c['beat'], c['revisions']):>18}{_pct(c['fixed'], c['unmet']):>18}"
            f"{_pct(c['broken'], c['kept']):>18}"
        )
    return "\n".join(lines)

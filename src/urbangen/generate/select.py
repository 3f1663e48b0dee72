"""Keep or drop each label map from its candidates' MCOC, and count what each class keeps and loses.

A map is kept when its best candidate's MCOC reaches ``threshold``; a map with no scorable object is
dropped as ``unscorable``; with class-relative scores, a map whose scorable objects all belong to classes
the segmenter does not recognise is kept as ``not_judged``. Filtering by a global score can starve a
rare class (its maps tend to score lower), so every class's kept/dropped counts are reported, a warning
is raised when a class loses more than ``warn_class_drop`` of its maps, and ``min_kept_per_class`` > 0
rescues, for each class that would keep fewer maps, its best-scoring dropped maps (rarest class first)
until it reaches that number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from urbangen.generate.config import McocConfig


@dataclass(frozen=True)
class Decision:
    kept: bool
    reason: str  # "kept", "below_threshold", "unscorable", "rescued", "not_judged"


def decide(scores: list[dict[str, Any]], cfg: McocConfig) -> dict[str, Decision]:
    """Decisions for score records (``id``, ``best_mcoc``, ``classes``), including rare-class rescue."""
    decisions: dict[str, Decision] = {}
    for record in scores:
        mcoc = record["best_mcoc"]
        if record.get("unjudged"):
            decisions[record["id"]] = Decision(True, "not_judged")
        elif mcoc is None:
            decisions[record["id"]] = Decision(False, "unscorable")
        else:
            decisions[record["id"]] = Decision(
                mcoc >= cfg.threshold, "kept" if mcoc >= cfg.threshold else "below_threshold"
            )
    if cfg.min_kept_per_class <= 0:
        return decisions
    by_class: dict[str, list[dict[str, Any]]] = {}
    for record in scores:
        for name in record["classes"]:
            by_class.setdefault(name, []).append(record)
    for name in sorted(by_class, key=lambda c: (len(by_class[c]), c)):
        members = by_class[name]
        kept = sum(decisions[r["id"]].kept for r in members)
        spare = sorted(
            (r for r in members if decisions[r["id"]].reason == "below_threshold"),
            key=lambda r: (-r["best_mcoc"], r["id"]),
        )
        for record in spare[: max(0, cfg.min_kept_per_class - kept)]:
            decisions[record["id"]] = Decision(True, "rescued")
    return decisions


def class_report(
    scores: list[dict[str, Any]], decisions: dict[str, Decision], class_names: tuple[str, ...], warn_drop: float
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per class: maps containing it, kept, dropped, drop fraction; and warnings for classes that lose
    more than ``warn_drop`` of their maps (or all of them)."""
    table: dict[str, dict[str, Any]] = {}
    for name in class_names:
        members = [r for r in scores if name in r["classes"]]
        kept = sum(decisions[r["id"]].kept for r in members)
        dropped = len(members) - kept
        table[name] = {
            "maps": len(members),
            "kept": kept,
            "dropped": dropped,
            "drop_fraction": dropped / len(members) if members else 0.0,
        }
    warnings = []
    for name, row in table.items():
        if row["maps"] and row["kept"] == 0:
            warnings.append(f"class {name!r} lost all {row['maps']} of its maps to the MCOC filter")
        elif row["maps"] and row["drop_fraction"] > warn_drop:
            warnings.append(
                f"class {name!r} lost {row['dropped']} of {row['maps']} maps ({row['drop_fraction']:.0%}) "
                f"to the MCOC filter (warn_class_drop {warn_drop:.0%})"
            )
    return table, warnings

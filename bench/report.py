"""The output of ``python -m bench ledger``: a readable table per database, the goals with
PASS/MISS, and one JSON line (starting with ``{``) with every figure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: (figure key, ratio key, comparison, threshold, what the goal says)
GOALS = (
    ("transfers_1_thread", "ratio", ">=", 0.7, "ours/limit, 1 thread"),
    ("transfers_8_threads", "ratio", ">=", 0.7, "ours/limit, 8 threads"),
    ("batch_atomic", "ratio", ">=", 0.5, "ours/limit, batches, atomic"),
    ("batch_independent", "ratio", ">=", 0.5, "ours/limit, batches, independent"),
    ("transfers_1_thread", "ratio_hordak", ">=", 2.0, "ours/django-hordak, 1 thread"),
    ("transfers_8_threads", "ratio_hordak", ">=", 2.0, "ours/django-hordak, 8 threads"),
    ("balance_read", "ratio", "<=", 1.2, "balance read time, 1M/1k postings"),
)


@dataclass(frozen=True)
class Goal:
    database: str
    measure: str
    text: str
    comparison: str
    threshold: float
    ratio: float

    @property
    def passed(self) -> bool:
        if self.comparison == ">=":
            return self.ratio >= self.threshold
        return self.ratio <= self.threshold

    def as_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "measure": self.measure,
            "goal": f"{self.comparison} {self.threshold}",
            "ratio": round(self.ratio, 3),
            "pass": self.passed,
        }


def goals(results: dict[str, dict[str, Any]]) -> list[Goal]:
    found = []
    for database, figures in results.items():
        for key, ratio_key, comparison, threshold, text in GOALS:
            if ratio_key in figures.get(key, {}):
                ratio = figures[key][ratio_key]
                found.append(
                    Goal(database, f"{key}.{ratio_key}", text, comparison, threshold, ratio)
                )
    return found


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _goal_cell(all_goals: list[Goal], database: str, measure: str) -> str:
    for goal in all_goals:
        if goal.database == database and goal.measure == measure:
            verdict = "PASS" if goal.passed else "MISS"
            return f"{goal.comparison} {goal.threshold:<4} {verdict}"
    return ""


def table(database: str, title: str, figures: dict[str, Any], all_goals: list[Goal]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    def add(measure: str, ours: str, other: str = "", ratio: str = "", goal: str = "") -> None:
        rows.append((measure, ours, other, ratio, goal))

    for key, label in (("transfers_1_thread", "1 thread"), ("transfers_8_threads", "8 threads")):
        figure = figures[key]
        add(
            f"transfers/s, {label}",
            _n(figure["ours"]),
            f"limit {_n(figure['limit'])}",
            f"{figure['ratio']:.2f}",
            _goal_cell(all_goals, database, f"{key}.ratio"),
        )
    for key, label in (("transfers_1_thread", "1 thread"), ("transfers_8_threads", "8 threads")):
        figure = figures[key]
        if "hordak" in figure:
            add(
                f"transfers/s, {label}, vs hordak",
                _n(figure["ours"]),
                f"django-hordak {_n(figure['hordak'])}",
                f"{figure['ratio_hordak']:.2f}",
                _goal_cell(all_goals, database, f"{key}.ratio_hordak"),
            )
        else:
            add(f"transfers/s, {label}, vs hordak", "-", "skipped: hordak needs PostgreSQL")
    for mode in ("atomic", "independent"):
        figure = figures[f"batch_{mode}"]
        add(
            f"entries/s, batches of 1,000, {mode}",
            _n(figure["ours"]),
            f"set-based limit {_n(figure['limit'])}",
            f"{figure['ratio']:.2f}",
            _goal_cell(all_goals, database, f"batch_{mode}.ratio"),
        )
    seal = figures["seal"]
    add("entries sealed/s, Ledger.seal()", _n(seal["per_second"]), f"{_n(seal['entries'])} entries")
    read = figures["balance_read"]
    add(f"balance read, {_n(read['postings_small'])} postings", f"{read['small_us']:.0f} us")
    add(
        f"balance read, {_n(read['postings_large'])} postings",
        f"{read['large_us']:.0f} us",
        f"vs {_n(read['postings_small'])} postings",
        f"{read['ratio']:.2f}",
        _goal_cell(all_goals, database, "balance_read.ratio"),
    )
    build = figures["balance_build"]
    add(
        "balance build via post_batch, postings/s",
        _n(build["postings_per_second"]),
        f"{_n(build['postings'])} in {build['seconds']:.1f} s",
    )
    header = ("measure", "ours", "compared with", "ratio", "goal")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    aligns = ("<", ">", "<", ">", "<")
    lines = [title]
    for row in [header, *rows]:
        cells = [
            f"{cell:{align}{width}}" for cell, align, width in zip(row, aligns, widths, strict=True)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def goal_summary(all_goals: list[Goal]) -> str:
    lines = ["Goals"]
    for goal in all_goals:
        verdict = "PASS" if goal.passed else "MISS"
        lines.append(
            f"  {verdict}  {goal.database:<10}  {goal.text:<36}  {goal.ratio:6.2f}  "
            f"(goal {goal.comparison} {goal.threshold})"
        )
    return "\n".join(lines)


def json_line(document: dict[str, Any]) -> str:
    """Every figure on one line; floats to 3 decimals."""
    return json.dumps(_rounded(document), separators=(",", ":"))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value

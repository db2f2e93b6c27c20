"""Every action the Python code can write to the audit trail has a name in the finance PC's words
(``mobile_web/staff/js/words-finance.js``, ``actionNames`` in both languages), so that the audit
screen says it in words.

The actions are found in the sources by a regex, so that a new one cannot be missed silently:
each ``action=`` is a string literal (every literal on the line counts: ``"a" if x else "b"``),
an f-string whose expansions are listed here (and checked against the code they come from), or
a name passed through by one of the known helpers, whose callers' literals are read as well."""

from __future__ import annotations

import re
from pathlib import Path

from issuers.programs import YearEndDecision
from points.registry import Merchant, Resident, Staff

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("points", "issuers", "redemption", "api")
WORDS = ROOT / "mobile_web/staff/js/words-finance.js"

ACTION = re.compile(r"\baction=(.+)")
LITERAL = re.compile(r'(?<![{\w])"([a-z_]+(?:\.[a-z_]+)+)"')
TEMPLATE = re.compile(r'f"([^"]*)"')
#: The helpers that take the action as an argument: ``helper(session, caller, now, "x.y", ...)``.
HELPER_CALL = re.compile(
    r'\b(?:audit_card|_audit)\(\s*\w+,\s*\w+,\s*\w+,\s*"([a-z_]+(?:\.[a-z_]+)+)"', re.S
)
#: ``action=<name>`` that passes an action through (file, expression): the audit record itself,
#: the two helpers above, and the finance API reading the trail.
PASSED_THROUGH = {
    ("points/audit.py", "action"),
    ("redemption/cards.py", "action"),
    ("redemption/catalog.py", "action"),
    ("api/routers/finance.py", "row.action"),
}
#: Each f-string action and what it writes.
TEMPLATES = {
    "{table}.status": {f"{model.__tablename__}.status" for model in (Merchant, Resident, Staff)},
    "budget.{decision}": {f"budget.{decision}" for decision in YearEndDecision},
}


def python_actions() -> set[str]:
    found: set[str] = set()
    passed: set[tuple[str, str]] = set()
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            text = path.read_text("utf-8")
            found |= set(HELPER_CALL.findall(text))
            for rest in ACTION.findall(text):
                literals = LITERAL.findall(rest)
                templates = TEMPLATE.findall(rest)
                for template in templates:
                    assert template in TEMPLATES, f"{name}: an action f-string {template!r}"
                    found |= TEMPLATES[template]
                if not literals and not templates:
                    passed.add((name, rest.strip().rstrip(",").strip()))
                found |= set(literals)
    assert passed == PASSED_THROUGH, "a new way of passing an action: read its callers here"
    return found


def test_the_templates_are_the_codes_own() -> None:
    people = (ROOT / "points/people.py").read_text("utf-8")
    statuses = set(re.findall(r"_change_status\(\s*session,\s*actor,\s*now,\s*(\w+),", people))
    assert statuses == {"Merchant", "Resident", "Staff"}


def words_of(language: str) -> dict[str, str]:
    text = WORDS.read_text("utf-8")
    ja, en = text.split("\n  en: {\n", 1)
    part = ja if language == "ja" else en
    block = re.search(r"^    actionNames: \{\n(.*?)^    \},", part, re.S | re.M)
    assert block, language
    return dict(re.findall(r'^      "([a-z_.]+)": "([^"]+)",$', block.group(1), re.M))


def test_every_audited_action_has_words_in_both_languages() -> None:
    actions = python_actions()
    assert len(actions) >= 50, sorted(actions)
    assert {"card.print", "statement.recovery", "merchant.status", "budget.lapse"} <= actions
    ja, en = words_of("ja"), words_of("en")
    assert list(ja) == list(en)
    assert sorted(actions - set(ja)) == []
    assert sorted(set(ja) - actions) == [], "a word for an action nothing writes"
    assert all(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", word) for word in ja.values())

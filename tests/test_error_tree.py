"""The domain's errors are one documented tree: every subclass of ``PointsError`` and
``LedgerError`` appears in the drawing of its module's tree under its real parent, every name
drawn is a class, every code is the class's own, and HTTP statuses are decided only in
``api.errors``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

import api.app  # noqa: F401  (every router, so every error class is defined)
import ledger.errors
import points.errors
import points.shell.wiring
from api.errors import describe_refusal, status_of
from issuers import errors as issuers_errors
from ledger.errors import LedgerError
from points.errors import PointsError
from redemption import errors as redemption_errors

#: The drawings of each tree: the issuing and spending sides' extend the point domain's.
DRAWINGS = {
    PointsError: (points.errors, issuers_errors, redemption_errors),
    LedgerError: (ledger.errors,),
}
NAME = re.compile(r"[A-Z][A-Za-z]*")


def drawn_parents(docstring: str) -> dict[str, str | None]:
    """{class name: the name drawn above it (None for a root)} from a docstring's tree(s)."""
    parents: dict[str, str | None] = {}
    base: int | None = None  # the literal block's indentation, once inside one
    stack: list[str] = []
    lines = docstring.splitlines()
    for number, line in enumerate(lines):
        if line.rstrip().endswith("::"):
            following = [later for later in lines[number + 1 :] if later.strip()]
            base = len(following[0]) - len(following[0].lstrip()) if following else None
            stack = []
            continue
        if base is None or not line.strip():
            continue
        if len(line) - len(line.lstrip()) < base:
            base = None  # the block has ended
            continue
        body = line[base:]
        match = NAME.search(body)
        if match is None:
            continue
        prefix = body[: match.start()]
        if prefix.strip(" │├└─"):
            continue  # not a line of the tree
        depth = len(prefix) // 4
        stack[depth:] = [match.group(0)]
        parents[match.group(0)] = stack[depth - 1] if depth else None
    return parents


def subclasses(root: type) -> Iterator[type]:
    for cls in root.__subclasses__():
        if not cls.__name__.startswith("_") and cls.__module__.split(".")[0] in (
            "points",
            "issuers",
            "redemption",
            "ledger",
            "api",
        ):
            yield cls
        yield from subclasses(cls)


def all_drawn(root: type) -> dict[str, str | None]:
    drawn: dict[str, str | None] = {}
    for module in DRAWINGS[root]:
        for name, parent in drawn_parents(module.__doc__ or "").items():
            # issuers' and redemption's trees start from classes drawn in points' tree.
            if parent is None and name in drawn:
                continue
            assert name not in drawn or drawn[name] == parent, (module.__name__, name)
            drawn[name] = parent
    return drawn


@pytest.mark.parametrize("root", [PointsError, LedgerError], ids=lambda root: root.__name__)
def test_every_error_class_is_drawn_under_its_parent(root: type) -> None:
    drawn = all_drawn(root)
    missing = []
    for cls in subclasses(root):
        parent = cls.__bases__[0].__name__
        if drawn.get(cls.__name__, "(not drawn)") != parent:
            missing.append(f"{cls.__module__}.{cls.__name__} under {parent}")
    assert not missing, "draw these in the error tree: " + ", ".join(missing)


@pytest.mark.parametrize("root", [PointsError, LedgerError], ids=lambda root: root.__name__)
def test_every_name_drawn_is_an_error_class(root: type) -> None:
    known = {cls.__name__ for cls in subclasses(root)} | {root.__name__}
    assert set(all_drawn(root)) - known == set()


def test_every_points_error_has_a_code_of_its_own() -> None:
    classes = [PointsError, *subclasses(PointsError)]
    for cls in classes:
        assert "code" in vars(cls), f"{cls.__name__} has no code of its own"
    codes = [cls.code for cls in classes]  # type: ignore[attr-defined]
    assert len(codes) == len(set(codes)), sorted(codes)


def test_the_http_status_is_decided_only_in_the_api() -> None:
    for cls in [PointsError, *subclasses(PointsError)]:
        assert "status" not in vars(cls), f"{cls.__name__} decides its own HTTP status"
    expected = {
        "validation_error": 422,
        "csv_invalid": 422,
        "unauthenticated": 401,
        "forbidden": 403,
        "not_found": 404,
        "conflict": 409,
        "cap_exceeded": 409,
        "upload_in_progress": 409,
        "rate_limited": 429,
        "unavailable": 503,
        "points_error": 400,
    }
    by_code = {cls.code: cls for cls in [PointsError, *subclasses(PointsError)]}  # type: ignore[attr-defined]
    for code, status in expected.items():
        cls = by_code[code]
        error = cls.__new__(cls)
        PointsError.__init__(error, "refused")
        assert status_of(error) == status, code
        assert describe_refusal(error)[0] == status, code


def test_the_drawing_parser_reads_nested_trees() -> None:
    drawing = """x

    ::

        Root
        ├── A          text
        │   ├── B
        │   └── C      more text
        └── D
    """
    assert drawn_parents(drawing) == {"Root": None, "A": "Root", "B": "A", "C": "A", "D": "Root"}

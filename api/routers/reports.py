"""Finance reports (docs/reports.md): trial balance, points outstanding, breakage, payments by
merchant, budgets, and the Payment Services Act's base-date report. JSON by default, or CSV
(``format=csv``: UTF-8 with a BOM, or CP932 with ``encoding=cp932``). Finance and admins only;
nothing here writes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BeforeValidator
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import AuditorDep, ServicesDep
from api.schemas import PROTECTED_ERRORS
from issuers import reports as issuer_reports
from points import reports
from points.errors import InvalidInput
from points.spreadsheet import csv_text
from redemption import reports as redemption_reports

router = APIRouter(
    prefix="/api/v1/finance/reports",
    tags=["finance"],
    responses={
        **PROTECTED_ERRORS,
        200: {
            "description": "the report as JSON, or as CSV with `format=csv`",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
    },
    route_class=StrictRoute,
)

Format = Annotated[Literal["json", "csv"], Query(description="`json` (default) or `csv`")]
Encoding = Annotated[Literal["utf-8", "cp932"], Query(description="of the CSV")]


def _day_as_written(value: object) -> object:
    """A date is written YYYY-MM-DD and nothing else (no time, no week date)."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


StrictDay = BeforeValidator(_day_as_written)
Day = Annotated[date, StrictDay, Query(description="a Tokyo date, YYYY-MM-DD")]
FromDay = Annotated[date, StrictDay, Query(alias="from", description="a Tokyo date, YYYY-MM-DD")]
ToDay = Annotated[date, StrictDay, Query(alias="to", description="a Tokyo date, included")]
FiscalYear = Annotated[int | None, Query(ge=2000, le=2999, description="e.g. 2026 for FY2026")]
#: The longest range a report reads (a year and a day: one fiscal year, leap or not).
RANGE_DAYS_MAX = 366


def _range(start: date, end: date) -> None:
    if end < start:
        raise InvalidInput("`to` is before `from`", field="to")
    if (end - start).days >= RANGE_DAYS_MAX:
        raise InvalidInput(f"the range is at most {RANGE_DAYS_MAX} days", field="to")


def _give(
    services: Any, build: Callable[[Session], reports.Report], fmt: str, encoding: str
) -> Any:
    report: reports.Report = services.read(build)
    if fmt == "json":
        return {"report": report.name, **report.parameters, "rows": report.as_dicts()}
    text = csv_text(report.columns, [["" if v is None else v for v in row] for row in report.rows])
    content = (
        text.encode("cp932", errors="replace")
        if encoding == "cp932"
        else ("\ufeff" + text).encode("utf-8")
    )
    suffix = "-".join(report.parameters.values())
    filename = f"{report.name}{'-' + suffix if suffix else ''}.csv"
    return Response(
        content,
        media_type=f"text/csv; charset={'Windows-31J' if encoding == 'cp932' else 'utf-8'}",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/trial-balance", summary="Trial balance at the end of a Tokyo date")
def trial_balance(
    caller: AuditorDep,
    services: ServicesDep,
    date: Day,
    format: Format = "json",
    encoding: Encoding = "utf-8",
) -> Any:
    """Debits and credits posted by the end of `date` (Tokyo), per ledger and kind of account,
    and their totals (equal)."""
    day = date
    return _give(services, lambda s: reports.trial_balance(s, day), format, encoding)


@router.get("/outstanding", summary="Points outstanding (the city's liability) at a date")
def outstanding(
    caller: AuditorDep,
    services: ServicesDep,
    date: Day,
    format: Format = "json",
    encoding: Encoding = "utf-8",
) -> Any:
    """Residents' unspent points at the end of `date` by point type, department, program and
    expiry month."""
    day = date
    return _give(services, lambda s: reports.outstanding(s, day), format, encoding)


def _ranged(
    path: str, summary: str, build: Callable[[Session, date, date], reports.Report], doc: str
) -> None:
    """A report over a range of Tokyo dates (`from`, `to`, both included)."""

    def route(
        caller: AuditorDep,
        services: ServicesDep,
        from_day: FromDay,
        to_day: ToDay,
        format: Format = "json",
        encoding: Encoding = "utf-8",
    ) -> Any:
        _range(from_day, to_day)
        return _give(services, lambda s: build(s, from_day, to_day), format, encoding)

    name = path.strip("/").replace("-", "_")
    router.get(path, summary=summary, description=doc, name=name)(route)


_ranged(
    "/breakage",
    "Expired points by month and program",
    reports.breakage,
    "Points moved to expired points (expiry runs and refunds to expired buckets) recorded from "
    "`from` to `to`, by Tokyo month, point type and program.",
)
_ranged(
    "/payments-by-merchant",
    "Payments by merchant and category",
    redemption_reports.payments_by_merchant,
    "Points paid to and refunded by each merchant, by category and point type, for entries "
    "recorded from `from` to `to` (Tokyo dates, included).",
)
_ranged(
    "/payments-by-month",
    "Payments by month and point type",
    redemption_reports.payments_by_month,
    "Points paid to and refunded by all merchants, by Tokyo month of recording and point type, "
    "for entries recorded from `from` to `to` (Tokyo dates, included): each month of the range "
    "is a row for every point type paid in the range, zeros included.",
)


@router.get("/budgets", summary="Budgets allocated, drawn and remaining")
def budgets(
    caller: AuditorDep,
    services: ServicesDep,
    fiscal_year: FiscalYear = None,
    format: Format = "json",
    encoding: Encoding = "utf-8",
) -> Any:
    """Each program budget's allocation, what was drawn from it and what remains, with the
    department and the program's budget code; one fiscal year or all."""
    return _give(services, lambda s: issuer_reports.budgets(s, fiscal_year), format, encoding)


@router.get("/psa-base-date", summary="Payment Services Act base-date report")
def psa_base_date(
    caller: AuditorDep,
    services: ServicesDep,
    date: Day,
    format: Format = "json",
    encoding: Encoding = "utf-8",
) -> Any:
    """Each point type's unused balance at the end of `date` (a base date is March 31 or
    September 30; other dates are allowed for a check), in points and yen, and its status:
    `reportable` (bought with yen from an operator, above ¥10 million), `below_threshold`,
    `exempt` (issued by the city, art. 4(3)) or `not_prepaid` (free points)."""
    day = date
    return _give(services, lambda s: reports.psa_base_date(s, day), format, encoding)

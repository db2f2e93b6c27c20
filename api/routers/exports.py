"""Ledger exports for finance and admins (docs/exports.md): sealed entries by seal sequence, as
CSV (UTF-8 with a BOM, or CP932), JSON Lines or an hledger journal, streamed.

Each export is checked first (the range, the format) and recorded in the audit trail (who, the
range, the format); a refused export writes nothing, not even the audit record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api import errors
from api.bodies import StrictRoute
from api.deps import AuditorDep, ServicesDep
from api.schemas import PROTECTED_ERRORS
from ledger.export import ExportError
from points import exports

router = APIRouter(
    prefix="/api/v1/finance", tags=["finance"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)

# Decimal digits only ("1.0", "+1", " 1" are refused); 18 digits stay below 2**63 - 1.
Sequence = Annotated[str, Query(pattern=r"^[1-9][0-9]{0,17}$")]
#: The query parameters the route takes; any other is refused, not ignored.
PARAMETERS = frozenset({"format", "from_seq", "to_seq", "from", "to", "from_id", "to_id"})
Day = Annotated[str, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
Format = Annotated[str, Query(min_length=1, max_length=32)]

#: HTTP status of each refusal.
STATUS = {
    "export_format_unknown": 422,
    "export_range_invalid": 422,
    "export_range_reversed": 422,
    "export_range_empty": 422,
    "export_range_unsealed": 409,
    "export_chain_gap": 409,
}
#: At most this many unencodable characters are named in the CP932 report header.
REPORTED_MAX = 20


@router.get(
    "/exports",
    response_class=StreamingResponse,
    response_model=None,
    responses={
        200: {"description": "The export, streamed.", "content": {"text/csv": {}}},
    },
)
def export_ledger(
    request_: Request,
    caller: AuditorDep,
    services: ServicesDep,
    format: Format,
    from_seq: Sequence | None = None,
    to_seq: Sequence | None = None,
    from_day: Annotated[Day | None, Query(alias="from")] = None,
    to_day: Annotated[Day | None, Query(alias="to")] = None,
    from_id: Sequence | None = None,
    to_id: Sequence | None = None,
) -> StreamingResponse | JSONResponse:
    """Sealed ledger entries ``from_seq .. to_seq`` (seal sequences, both included).

    One range, exactly: ``from_seq`` and ``to_seq``; or ``from`` and ``to``, days in Tokyo
    (``YYYY-MM-DD``, both included), or ``from_id`` and ``to_id``, entry ids, each widened to
    the seal range that covers their entries (the seal chain follows commit order, so it may hold
    a few entries recorded just outside; refused naming the entries not sealed yet). The seal
    range exported is in the headers ``X-Export-From-Seq`` and ``X-Export-To-Seq``.

    ``format``: ``csv`` (UTF-8 with a BOM), ``csv-cp932`` (characters CP932 cannot hold are
    written as ``?`` and named in the ``X-Unencodable-Characters`` header), ``jsonl`` or
    ``hledger``. Check a CSV or JSON Lines export with ``points verify-export``; a CP932 or
    hledger export is checked through its JSON Lines twin (the same range as ``jsonl``)."""
    unknown = sorted(set(request_.query_params) - PARAMETERS)
    repeated = sorted(name for name in PARAMETERS if len(request_.query_params.getlist(name)) > 1)
    if unknown or repeated:
        return errors.problem(
            422,
            "validation_error",
            f"unknown query parameters: {', '.join(unknown)}"
            if unknown
            else f"query parameters given twice: {', '.join(repeated)}",
        )
    try:
        fmt = exports.parse_format(format)
        first, last = exports.resolve_range(
            services.engine,
            seqs=(_int(from_seq), _int(to_seq)),
            days=(_day(from_day), _day(to_day)),
            ids=(_int(from_id), _int(to_id)),
        )
        request = exports.ExportRequest(fmt, first, last)
        exports.record_export(
            services.engine, request, actor=caller, at=services.clock(), via="api"
        )
    except ExportError as error:
        return errors.problem(STATUS.get(error.code, 422), error.code, error.message)
    headers = {
        "Content-Disposition": (
            f'attachment; filename="ledger-{first}-{last}.{exports.SUFFIXES[fmt]}"'
        ),
        "Cache-Control": "no-store",
        "X-Export-From-Seq": str(first),
        "X-Export-To-Seq": str(last),
    }
    if fmt is exports.ExportFormat.CSV_CP932:
        # A first pass, streamed and thrown away, finds what CP932 cannot hold: the report must
        # be in the headers, which go before the body.
        found = exports.Unencodable()
        for _ in exports.stream_export(services.engine, request, found):
            pass
        headers["X-Unencodable-Count"] = str(len(found.found))
        if found.found:
            named = exports.Unencodable(found.found[:REPORTED_MAX])
            headers["X-Unencodable-Characters"] = (
                named.summary().encode("ascii", "backslashreplace").decode("ascii")
            )

    def body() -> Iterator[bytes]:
        yield from exports.stream_export(services.engine, request)

    return StreamingResponse(body(), media_type=exports.MEDIA_TYPES[fmt], headers=headers)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ExportError("export_range_invalid", f"{value} is not a day (YYYY-MM-DD)") from None

"""A settlement statement as the API shows it: read once (``load``), then answered as JSON
(``detail``), as CSV for Excel (``statement_csv``) or as a page to print (``render``); and a
run's statements and budget lines as CSV (``run_csv``, ``budget_lines_csv``).

**Who sees what.** Finance sees the ledger's ids (the settlement entry, each covered entry, the
recovery's entry and who recorded it); a shop sees its own statements with each covered entry
as the payment it was (a refund: the payment refunded), never a ledger id.

**CSV** as the expiry letters' (``points.notices``): UTF-8 with a byte order mark by default,
or CP932 for older Excel (〓 for a character it cannot hold), rows ending CRLF, text cells
made safe from formulas (``points.spreadsheet``); the header row in Japanese.

**The page** follows the expiry notice's (``api.notice_page``): A4 portrait, Japanese, black on
white, no script; its only resource is its inline style, allowed by its hash; every value from
the registry is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from urllib.parse import quote

import sqlalchemy as sa
from sqlmodel import Session, col, select

from api.notice_page import ja_date
from api.schemas_settlement import (
    CoveredEntryPublic,
    RecoveryPublic,
    RunTotals,
    StatementDetail,
    StatementFigures,
    StatementLinePublic,
    StatementSummary,
    TransferTotals,
)
from ledger import schema as ledger_schema
from points.calendar import TOKYO
from points.pointtypes import PointType
from points.registry import Merchant
from points.spreadsheet import csv_text
from redemption import settlement
from redemption.payments import Payment, PaymentRefund
from redemption.settlement_models import (
    LineKind,
    SettlementRun,
    Statement,
    StatementEntry,
    StatementLine,
    StatementRecovery,
    Transfer,
)

ENCODINGS = ("utf-8", "cp932")
CHUNK = 500

# Reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """The merchants and point types statements name."""

    merchants: dict[str, Merchant]
    point_types: dict[str, PointType]

    @classmethod
    def of(cls, session: Session, statements: Iterable[StatementLike]) -> Names:
        listed = list(statements)
        merchant_ids = {s.merchant_id for s in listed}
        type_ids = {s.point_type_id for s in listed}
        merchants = (
            session.exec(select(Merchant).where(col(Merchant.id).in_(merchant_ids))).all()
            if merchant_ids
            else []
        )
        types = (
            session.exec(select(PointType).where(col(PointType.id).in_(type_ids))).all()
            if type_ids
            else []
        )
        return cls({m.id: m for m in merchants}, {p.id: p for p in types})


StatementLike = Statement | settlement.PlannedStatement


def figures(statement: StatementLike, names: Names, period: str) -> dict[str, object]:
    """The fields of ``StatementFigures`` of a statement or a planned one."""
    merchant = names.merchants[statement.merchant_id]
    point_type = names.point_types[statement.point_type_id]
    return {
        "period": period,
        "merchant_id": statement.merchant_id,
        "merchant_name_ja": merchant.name_ja,
        "merchant_name_en": merchant.name_en,
        "point_type": point_type.code,
        "unit": point_type.unit,
        "payment_count": statement.payment_count,
        "refund_count": statement.refund_count,
        "payment_points": statement.payment_points,
        "refund_points": statement.refund_points,
        "net_points": statement.net_points,
        "carried_in": statement.carried_in,
        "settle_points": statement.settle_points,
        "carried_out": statement.carried_out,
        "yen_rate": statement.yen_rate,
        "fee_bps": statement.fee_bps,
        "yen": statement.yen,
        "fee": statement.fee,
        "yen_to_pay": statement.yen_to_pay,
        "transfer": str(statement.transfer),
        "final": statement.final,
    }


def summary(statement: Statement, names: Names) -> StatementSummary:
    return StatementSummary.model_validate(
        {
            "id": statement.id,
            "run_id": statement.run_id,
            **figures(statement, names, statement.period),
        }
    )


def totals(statements: Sequence[StatementFigures | StatementLike]) -> RunTotals:
    by_transfer: dict[str, TransferTotals] = {}
    for kind in Transfer:
        of_kind = [s for s in statements if str(s.transfer) == kind]
        by_transfer[str(kind)] = TransferTotals(
            statements=len(of_kind), yen_to_pay=sum(s.yen_to_pay for s in of_kind)
        )
    return RunTotals(
        statements=len(statements),
        points=sum(s.settle_points for s in statements),
        yen=sum(s.yen for s in statements),
        fee=sum(s.fee for s in statements),
        yen_to_pay=sum(s.yen_to_pay for s in statements),
        by_transfer=by_transfer,
    )


def line_public(
    kind: str,
    program_id: str | None,
    budget_code: str | None,
    points: int,
    yen: int,
    programs: dict[str, settlement.ProgramInfo],
) -> StatementLinePublic:
    info = programs.get(program_id) if program_id is not None else None
    return StatementLinePublic(
        kind=kind,
        program_id=program_id,
        program_name_ja=info.name_ja if info is not None else None,
        program_name_en=info.name_en if info is not None else None,
        budget_code=budget_code,
        points=points,
        yen=yen,
    )


def lines_public(session: Session, lines: Sequence[StatementLine]) -> list[StatementLinePublic]:
    programs = settlement.program_names(
        session, {line.program_id for line in lines if line.program_id is not None}
    )
    return [
        line_public(line.kind, line.program_id, line.budget_code, line.points, line.yen, programs)
        for line in lines
    ]


def payments_of_entries(session: Session, entry_ids: Sequence[int]) -> dict[int, str]:
    """The payment of each covered entry: a payment's spend, the posting of a payment's hold,
    or a refund (the payment refunded)."""
    found: dict[int, str] = {}
    entry = ledger_schema.entry
    for start in range(0, len(entry_ids), CHUNK):
        chunk = list(entry_ids[start : start + CHUNK])
        found.update(
            session.exec(
                select(Payment.entry_id, Payment.id).where(col(Payment.entry_id).in_(chunk))
            ).all()
        )
        found.update(
            session.exec(
                select(PaymentRefund.entry_id, PaymentRefund.payment_id).where(
                    col(PaymentRefund.entry_id).in_(chunk)
                )
            ).all()
        )
        resolutions = session.connection().execute(
            sa.select(entry.c.id, Payment.__table__.c.id)  # type: ignore[attr-defined]
            .join(
                Payment.__table__,  # type: ignore[attr-defined]
                Payment.__table__.c.entry_id == entry.c.pending_id,  # type: ignore[attr-defined]
            )
            .where(entry.c.id.in_(chunk))
        )
        found.update({int(entry_id): str(payment_id) for entry_id, payment_id in resolutions})
    return found


@dataclass(frozen=True, slots=True)
class StatementView:
    """Everything a statement's answers show."""

    statement: Statement
    run: SettlementRun
    merchant: Merchant
    point_type: PointType
    payout_date: date | None
    lines: list[StatementLinePublic]
    entries: list[StatementEntry]
    payments: dict[int, str]
    recovery: StatementRecovery | None
    #: Finance's view (ledger ids) or the shop's.
    for_finance: bool

    @property
    def names(self) -> Names:
        return Names({self.merchant.id: self.merchant}, {self.point_type.id: self.point_type})


def load(
    session: Session, statement_id: str, *, merchant_id: str | None = None, for_finance: bool
) -> StatementView:
    """One statement (only ``merchant_id``'s, when given: 404 otherwise) and what it shows."""
    statement = settlement.get_statement(session, statement_id, merchant_id=merchant_id)
    run = settlement.get_run(session, statement.run_id)
    merchant = session.get(Merchant, statement.merchant_id)
    point_type = session.get(PointType, statement.point_type_id)
    assert merchant is not None and point_type is not None
    entries = settlement.entries_of(session, statement.id)
    return StatementView(
        statement=statement,
        run=run,
        merchant=merchant,
        point_type=point_type,
        payout_date=settlement.payout_date_of(session, statement),
        lines=lines_public(session, settlement.lines_of(session, statement.id)),
        entries=entries,
        payments=payments_of_entries(session, [e.entry_id for e in entries]),
        recovery=session.get(StatementRecovery, statement.id),
        for_finance=for_finance,
    )


def recovery_public(recovery: StatementRecovery, *, for_finance: bool) -> RecoveryPublic:
    return RecoveryPublic(
        statement_id=recovery.statement_id,
        method=recovery.method,
        points=recovery.points,
        yen=recovery.yen,
        note=recovery.note,
        entry_id=recovery.entry_id if for_finance else None,
        recorded_by=recovery.recorded_by if for_finance else None,
        recorded_at=recovery.recorded_at,
    )


def detail(view: StatementView) -> StatementDetail:
    statement, finance = view.statement, view.for_finance
    return StatementDetail(
        **summary(statement, view.names).model_dump(),
        cut_at=view.run.cut_at,
        payout_date=view.payout_date,
        entry_id=statement.entry_id if finance else None,
        created_at=statement.created_at,
        lines=view.lines,
        entries=[
            CoveredEntryPublic(
                entry_id=e.entry_id if finance else None,
                kind=e.kind,
                payment_id=view.payments.get(e.entry_id),
                points=e.points,
                recorded_at=e.recorded_at,
            )
            for e in view.entries
        ],
        recovery=recovery_public(view.recovery, for_finance=finance)
        if view.recovery is not None
        else None,
    )


# CSV -----------------------------------------------------------------------------------------

STATEMENT_HEADER = (
    "明細番号",
    "期間",
    "加盟店",
    "ポイント種別",
    "区分",
    "件数",
    "ポイント",
    "円",
    "事業",
    "予算科目",
    "取引番号",
    "元帳番号",
    "記録日時",
)
LINE_KINDS_JA = {
    LineKind.PROGRAM: "予算科目",
    LineKind.UNATTRIBUTED: "予算科目（事業不明）",
    LineKind.CARRIED_IN: "予算科目（前月からの繰越）",
    LineKind.CARRIED_OUT: "予算科目（翌月への繰越）",
}
TRANSFER_JA = {Transfer.BANK: "振込", Transfer.NONE: "振込なし（市の窓口）"}


def encoded(text: str, encoding: str) -> bytes:
    """CSV text as UTF-8 with a BOM, or CP932 (〓 for what it cannot hold)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding is one of {ENCODINGS}")
    if encoding == "utf-8":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    return "".join(_cp932(character) for character in text).encode("cp932")


def _cp932(character: str) -> str:
    try:
        character.encode("cp932")
    except UnicodeEncodeError:
        return "〓"
    return character


def _local(instant: datetime) -> str:
    return instant.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")


def statement_rows(view: StatementView) -> list[tuple[object, ...]]:
    s, rate = view.statement, view.statement.yen_rate
    head = (s.id, s.period, view.merchant.name_ja, view.point_type.code)

    def row(kind: str, count: object, points: object, yen: object) -> tuple[object, ...]:
        return (*head, kind, count, points, yen, "", "", "", "", "")

    rows: list[tuple[object, ...]] = [
        row("お支払い", s.payment_count, s.payment_points, s.payment_points * rate),
        row("ご返金", s.refund_count, -s.refund_points, -s.refund_points * rate),
        row("前月からの繰越", "", s.carried_in, s.carried_in * rate),
        row("翌月への繰越", "", s.carried_out, s.carried_out * rate),
        row("精算ポイント", "", s.settle_points, s.yen),
        row(f"換算レート（円/{view.point_type.unit}）", "", "", rate),
        row(f"手数料（{s.fee_bps / 100:g}%）", "", "", -s.fee),
        row("お支払額", "", "", s.yen_to_pay),
        row(TRANSFER_JA[Transfer(s.transfer)], "", "", ""),
    ]
    if s.final:
        rows.append(row("最終明細", "", "", ""))
    for line in view.lines:
        rows.append(
            (
                *head,
                LINE_KINDS_JA[LineKind(line.kind)],
                "",
                line.points,
                line.yen,
                line.program_name_ja or "",
                line.budget_code or "",
                "",
                "",
                "",
            )
        )
    for e in view.entries:
        rows.append(
            (
                *head,
                "対象取引（お支払い）" if e.kind == "payment" else "対象取引（ご返金）",
                1,
                e.points,
                e.points * rate,
                "",
                "",
                view.payments.get(e.entry_id, ""),
                e.entry_id if view.for_finance else "",
                _local(e.recorded_at),
            )
        )
    return rows


def statement_csv(view: StatementView, encoding: str) -> bytes:
    return encoded(csv_text(STATEMENT_HEADER, statement_rows(view)), encoding)


RUN_HEADER = (
    "明細番号",
    "期間",
    "加盟店番号",
    "加盟店",
    "ポイント種別",
    "お支払い件数",
    "ご返金件数",
    "お支払いポイント",
    "ご返金ポイント",
    "差引ポイント",
    "前月からの繰越",
    "精算ポイント",
    "翌月への繰越",
    "換算レート",
    "金額",
    "手数料率（bps）",
    "手数料",
    "お支払額",
    "振込",
    "最終明細",
)


def run_csv(statements: Sequence[Statement], names: Names, encoding: str) -> bytes:
    rows = [
        (
            s.id,
            s.period,
            s.merchant_id,
            names.merchants[s.merchant_id].name_ja,
            names.point_types[s.point_type_id].code,
            s.payment_count,
            s.refund_count,
            s.payment_points,
            s.refund_points,
            s.net_points,
            s.carried_in,
            s.settle_points,
            s.carried_out,
            s.yen_rate,
            s.yen,
            s.fee_bps,
            s.fee,
            s.yen_to_pay,
            TRANSFER_JA[Transfer(s.transfer)],
            "最終" if s.final else "",
        )
        for s in statements
    ]
    return encoded(csv_text(RUN_HEADER, rows), encoding)


BUDGET_HEADER = ("期間", "予算科目", "事業", "区分", "明細数", "ポイント", "円")


def budget_lines_csv(
    session: Session, run: SettlementRun, statements: Sequence[Statement], encoding: str
) -> bytes:
    """The run's budget lines summed per budget code (款項目節) and program; the carries and
    any unattributed points as lines of their own; then the total per budget code."""
    ids = [s.id for s in statements]
    lines: list[StatementLine] = []
    for start in range(0, len(ids), CHUNK):
        lines.extend(
            session.exec(
                select(StatementLine).where(
                    col(StatementLine.statement_id).in_(ids[start : start + CHUNK])
                )
            ).all()
        )
    programs = settlement.program_names(
        session, {line.program_id for line in lines if line.program_id is not None}
    )
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    codes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for line in lines:
        info = programs.get(line.program_id) if line.program_id is not None else None
        key = (line.budget_code or "", info.name_ja if info is not None else "", line.kind)
        seen[key].add(line.statement_id)
        sums[key][1] += line.points
        sums[key][2] += line.yen
        codes[line.budget_code or ""][0] += line.points
        codes[line.budget_code or ""][1] += line.yen
    rows: list[tuple[object, ...]] = [
        (
            run.period,
            code,
            name,
            LINE_KINDS_JA[LineKind(kind)],
            len(seen[(code, name, kind)]),
            points,
            yen,
        )
        for (code, name, kind), (_, points, yen) in sorted(sums.items())
    ]
    rows.extend(
        (run.period, code, "", "予算科目計", "", points, yen)
        for code, (points, yen) in sorted(codes.items())
    )
    rows.append(
        (
            run.period,
            "",
            "",
            "合計",
            len(statements),
            sum(s.settle_points for s in statements),
            sum(s.yen for s in statements),
        )
    )
    return encoded(csv_text(BUDGET_HEADER, rows), encoding)


def media_type(encoding: str) -> str:
    # CP932's registered name is Windows-31J (Shift_JIS lacks some of its characters).
    return f"text/csv; charset={'Windows-31J' if encoding == 'cp932' else 'utf-8'}"


def attachment(ascii_name: str, name: str) -> str:
    """A Content-Disposition naming the file in ASCII, and in UTF-8 for clients that read it."""
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def statement_file_names(view: StatementView) -> tuple[str, str]:
    s = view.statement
    ascii_name = f"statement-{s.period}-{s.merchant_id}-{view.point_type.code}.csv"
    return ascii_name, f"精算書-{s.period}-{view.merchant.name_ja}-{view.point_type.code}.csv"


# The page to print ---------------------------------------------------------------------------

STYLE = """
@page { size: A4 portrait; margin: 18mm; }
html { font-family: "BIZ UDPGothic", "Hiragino Sans", "Yu Gothic", "Noto Sans JP", sans-serif;
  font-size: 11pt; line-height: 1.5; color: #000; background: #fff; }
body { margin: 0 auto; max-width: 174mm; }
h1 { font-size: 18pt; margin: 0 0 4mm; }
h2 { font-size: 13pt; margin: 7mm 0 2mm; }
.city { font-size: 12pt; margin: 0 0 2mm; }
.to { font-size: 14pt; margin: 0 0 4mm; }
.final { font-weight: bold; border: 2px solid #000; padding: 2mm 3mm; display: inline-block; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; }
th, td { border: 1px solid #000; padding: 1.5mm 2.5mm; text-align: left; }
td.n { text-align: right; white-space: nowrap; }
tr.total th, tr.total td { font-weight: bold; }
.note { font-size: 10pt; }
.issued { margin-top: 8mm; font-size: 10pt; }
tr { page-break-inside: avoid; break-inside: avoid; }
@media screen { body { padding: 16px; } }
"""
#: The page's Content-Security-Policy: nothing but its own inline style, by hash.
CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    + "'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
RECOVERY_JA = {"repaid": "ご返金済み", "offset": "相殺済み", "written_off": "償却済み"}


def _n(value: int) -> str:
    return f"{value:,}"


def _period_ja(period: str) -> str:
    return f"{int(period[:4])}年{int(period[5:])}月分"


def render(view: StatementView, city_name: str, today: date) -> str:
    """The statement as a page to print (A4, Japanese)."""
    s, unit = view.statement, escape(view.point_type.unit)
    rate = s.yen_rate
    city = escape(city_name)
    merchant = escape(view.merchant.name_ja)
    point_type = escape(view.point_type.name_ja)
    if Transfer(s.transfer) == Transfer.NONE:
        payout = "振込なし（市の窓口）"
    elif view.payout_date is not None:
        payout = ja_date(view.payout_date)
    else:
        payout = "未払い"
    figure_rows = [
        ("お支払い件数", f"{_n(s.payment_count)} 件"),
        ("お支払いポイント", f"{_n(s.payment_points)} {unit}"),
        ("ご返金件数", f"{_n(s.refund_count)} 件"),
        ("ご返金ポイント", f"{_n(-s.refund_points)} {unit}"),
        ("差引ポイント", f"{_n(s.net_points)} {unit}"),
        ("前月からの繰越", f"{_n(s.carried_in)} {unit}"),
        ("精算ポイント", f"{_n(s.settle_points)} {unit}"),
        ("翌月への繰越", f"{_n(s.carried_out)} {unit}"),
        (f"換算レート 円/{unit}", f"{_n(rate)} 円"),
        ("金額", f"{_n(s.yen)} 円"),
        (f"手数料（{s.fee_bps / 100:g}%）", f"{_n(s.fee)} 円"),
    ]
    figures_html = "".join(
        f'<tr><th scope="row">{label}</th><td class="n">{value}</td></tr>'
        for label, value in figure_rows
    )
    figures_html += (
        f'<tr class="total"><th scope="row">お支払額</th>'
        f'<td class="n">{_n(s.yen_to_pay)} 円</td></tr>'
    )
    line_rows = "".join(
        "<tr>"
        f"<td>{escape(_line_name(line))}</td>"
        f"<td>{escape(_budget_code(line))}</td>"
        f'<td class="n">{_n(line.points)} {unit}</td>'
        f'<td class="n">{_n(line.yen)} 円</td>'
        "</tr>"
        for line in view.lines
    )
    lines_html = (
        "<table><thead><tr><th>事業</th><th>予算科目 (款項目節)</th><th>ポイント</th>"
        f"<th>円</th></tr></thead><tbody>{line_rows}</tbody></table>"
        if view.lines
        else "<p>予算科目の内訳はありません。</p>"
    )
    final_html = ""
    if s.final:
        if s.carried_out < 0:
            owed = (
                f"<p>加盟店から市へのご返金額：{_n(-s.carried_out)} {unit}"
                f"（{_n(-s.carried_out * rate)} 円）</p>"
            )
            if view.recovery is not None:
                owed += (
                    f"<p>{escape(RECOVERY_JA.get(view.recovery.method, view.recovery.method))}"
                    f"（{ja_date(view.recovery.recorded_at.astimezone(TOKYO).date())}）："
                    f"{escape(view.recovery.note)}</p>"
                )
        elif s.yen_to_pay > 0:
            owed = f"<p>市から加盟店へのお支払額：{_n(s.yen_to_pay)} 円</p>"
        else:
            owed = "<p>市と加盟店の間に未精算の金額はありません。</p>"
        final_html = (
            '<section><p class="final">最終明細</p>'
            "<p>加盟店の取扱終了に伴う最終の精算書です。</p>"
            f"{owed}</section>"
        )
    elif s.carried_out < 0:
        final_html = (
            f'<p class="note">差引がマイナスのため、{_n(-s.carried_out)} {unit} を'
            "翌月の精算に繰り越します。</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>精算書 (お支払明細) {escape(s.period)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<p class="city">{city}</p>
<h1>精算書 (お支払明細)</h1>
<p class="to">{merchant} 御中</p>
<table><tbody>
<tr><th scope="row">対象期間</th><td>{escape(_period_ja(s.period))}</td></tr>
<tr><th scope="row">締め日時</th><td>{escape(_local(view.run.cut_at))}</td></tr>
<tr><th scope="row">ポイント種別</th><td>{point_type}</td></tr>
<tr><th scope="row">お支払日</th><td>{payout}</td></tr>
<tr><th scope="row">明細番号</th><td>{escape(s.id)}</td></tr>
</tbody></table>
{final_html}
<h2>精算の内容</h2>
<table><tbody>{figures_html}</tbody></table>
<h2>予算科目の内訳</h2>
{lines_html}
<p class="issued">{ja_date(today)} {city}</p>
</main>
</body>
</html>
"""


def _budget_code(line: StatementLinePublic) -> str:
    """A program's budget code, or 未設定 (not set) for a program without one."""
    if line.budget_code:
        return line.budget_code
    return "未設定" if line.kind == LineKind.PROGRAM else ""


def _line_name(line: StatementLinePublic) -> str:
    if line.kind == LineKind.PROGRAM:
        return line.program_name_ja or line.program_id or ""
    return {
        LineKind.UNATTRIBUTED: "事業不明",
        LineKind.CARRIED_IN: "前月からの繰越",
        LineKind.CARRIED_OUT: "翌月への繰越",
    }.get(LineKind(line.kind), line.kind)

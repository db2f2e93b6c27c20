"""The expiry notice of one resident as a page to print at the counter (issue 19 part 5).

The letters residents without a phone get are a mail merge of ``points.notices.expiring``
(``GET /api/v1/counter/expiry-notices``); this page is the same query for one resident
(``resident_id=``), so the counter prints what the letter says: the address number, the name,
and per point type the points that expire within the window, the first date they expire on,
and the balance. Japanese first, English after; A4 portrait (``@page``), large type, black on
white, nothing that needs a script.

The API's pages load nothing (``API_CSP``: ``default-src 'none'``); this page's only resource
is its inline style, allowed by its SHA-256 (``CSP``), never ``'unsafe-inline'``. Every value
from the registry is escaped. It carries personal data: ``no-store`` and no Referer.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import date
from html import escape

from points.notices import Notice
from points.pointtypes import PointType
from points.registry import Resident

STYLE = """
@page { size: A4 portrait; margin: 20mm; }
html { font-family: "BIZ UDPGothic", "Hiragino Sans", "Yu Gothic", "Noto Sans JP", sans-serif;
  font-size: 14pt; line-height: 1.6; color: #000; background: #fff; }
body { margin: 0 auto; max-width: 170mm; }
h1 { font-size: 20pt; margin: 0 0 8mm; }
h2 { font-size: 15pt; margin: 10mm 0 4mm; }
.to { font-size: 16pt; margin: 0 0 6mm; }
table { border-collapse: collapse; width: 100%; margin: 4mm 0; }
th, td { border: 1px solid #000; padding: 2mm 3mm; text-align: left; }
td.n { text-align: right; white-space: nowrap; }
.en { margin-top: 12mm; font-size: 12pt; page-break-inside: avoid; break-inside: avoid; }
.issued { margin-top: 10mm; font-size: 12pt; }
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


@dataclass(frozen=True, slots=True)
class NoticeLine:
    """One point type's line of the notice."""

    point_type: PointType
    notice: Notice


def ja_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _amount(value: int, unit: str) -> str:
    return f"{value:,} {escape(unit)}"


def render(resident: Resident, lines: list[NoticeLine], today: date, within_days: int) -> str:
    """The page: the letter's content for ``resident`` on ``today``."""
    name = escape(resident.name or "")
    number = escape(resident.address_number or "")
    last4 = escape(next((line.notice.card_last4 for line in lines if line.notice.card_last4), ""))
    card_ja = f"<p>カード番号の下4桁 {last4}</p>" if last4 else ""
    card_en = f"<p>Your card ends in {last4}.</p>" if last4 else ""
    if lines:
        rows_ja = "".join(
            f"<tr><td>{escape(line.point_type.name_ja)}</td>"
            f'<td class="n">{_amount(line.notice.expiring_points, line.point_type.unit)}</td>'
            f"<td>{ja_date(line.notice.first_expiry_date)}</td>"
            f'<td class="n">{_amount(line.notice.balance, line.point_type.unit)}</td></tr>'
            for line in lines
        )
        body_ja = (
            "<p>お持ちの地域ポイントのうち、次のポイントがまもなく失効します。"
            "有効期限までに、加盟店または市役所窓口でご利用ください。</p>"
            "<table><thead><tr><th>ポイント</th><th>まもなく失効</th><th>有効期限</th>"
            f"<th>残高</th></tr></thead><tbody>{rows_ja}</tbody></table>"
        )
        rows_en = "".join(
            f"<tr><td>{escape(line.point_type.name_en)}</td>"
            f'<td class="n">{_amount(line.notice.expiring_points, line.point_type.unit)}</td>'
            f"<td>{line.notice.first_expiry_date.isoformat()}</td>"
            f'<td class="n">{_amount(line.notice.balance, line.point_type.unit)}</td></tr>'
            for line in lines
        )
        body_en = (
            "<p>Some of your local points expire soon. Please use them at a local shop or at "
            "the city counter before they expire.</p>"
            "<table><thead><tr><th>Points</th><th>Expiring soon</th><th>Expires on</th>"
            f"<th>Balance</th></tr></thead><tbody>{rows_en}</tbody></table>"
        )
    else:
        body_ja = f"<p>{within_days}日以内に失効するポイントはありません。</p>"
        body_en = f"<p>None of your points expire within {within_days} days.</p>"
    return f"""<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>ポイントの有効期限のお知らせ</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>ポイントの有効期限のお知らせ</h1>
<p class="to">{name} 様</p>
<p>宛名番号 {number}</p>
{card_ja}
{body_ja}
<p class="issued">{ja_date(today)} 市役所窓口</p>
<section class="en" lang="en">
<h2>Your points expiring soon</h2>
{card_en}
{body_en}
<p>Issued on {today.isoformat()} at the city counter.</p>
</section>
</main>
</body>
</html>
"""

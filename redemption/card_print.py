"""Print-ready resident cards (issue 19): one card as an ID-1 SVG, and an A4 sheet of up to 10.

**What is printed.** The front of a card (85.6 × 54 mm, ISO/IEC 7810 ID-1, the size of a bank
card) carries:

- the **card QR**: the card's signed token text exactly as stored (``Card.text``: what a till
  scans and ``cards.card_by_token`` reads), drawn as vector modules (one path of dark runs,
  ``points.qrrender.dark_runs``) in a square of ``QR_SIDE_MM`` with the 4-module quiet zone.
  A card token's text is QR version 7 at most (45 modules, 53 with the quiet zone, with the
  longest origin of 40 characters), so a module is at least 34 / 53 = 0.64 mm, above the
  0.5 mm a till's scanner reads at arm's length; ``card_svg`` refuses a code that would print
  smaller (``InvalidInput``; even version 10 would still print at 0.52 mm);
- the **card number** in groups of four (``cards.grouped``) under the QR, for typing when a
  camera fails, stretched to the QR's width (``textLength``) so it never runs into the text;
- the **city's name** (``POINTS_CITY_NAME``, ``POINTS_CITY_NAME_EN``: ``points.settings``);
- **how to check the balance**, Japanese first and English on the next line: at a shop's till
  when paying (the receipt shows it), at the city counter, or on the expiry letter. Never with
  the PIN on a phone: the card says that no phone or web page asks for it, since a page that
  did would be a phishing page;
- what to do when it is lost (tell the city counter, which blocks it).

**What is not printed**, by design: the **PIN** (it is the resident's secret; a card with its
PIN on it pays for anyone who finds it) and the **resident's name** (a lost card must not give
a name away, nor tie a name to a card number for whoever finds it; the counter finds the card's
resident by its QR or number). Nor is the card's status: the printed face is the same for the
card's whole life.

**The A4 sheet** (210 × 297 mm) holds up to 10 cards, 2 columns × 5 rows, edge to edge and
centred, with crop marks in the margins at every cut line (5 mm long, 2 mm away from the
cards), for cutting with a guillotine at the counter. The cards carry no bleed: their
background is white.

**Text.** Fonts are named ``"Noto Sans CJK JP", sans-serif`` (``fonts-noto-cjk``); widths are
estimated (a CJK character one em, any other character 0.6 em) and a line that might overflow
its column gets a ``textLength`` that squeezes it in, so a long city name never runs over the
QR. Every text is XML-escaped.

**Who may print, and the audit.** Counter staff print active cards only (a blocked or replaced
card, or one whose resident may no longer pay, is ``card_blocked``: printing it again would put
a dead card in a resident's hand). Every print is in the audit trail (``card.print``: who
printed which card, its last four digits, and whether on a sheet), through the one helper that
writes card acts (``redemption.cards``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from sqlmodel import Session

from points import qrrender
from points.auth import Principal
from points.errors import InvalidInput
from points.registry import Resident, ResidentStatus
from redemption import cards
from redemption.cards import Card, CardStatus
from redemption.errors import CardBlocked

CARD_WIDTH_MM = 85.6
CARD_HEIGHT_MM = 54.0
#: The QR's square, its 4-module quiet zone included.
QR_SIDE_MM = 34.0
#: The smallest module a till's scanner reads from a printed card.
MODULE_MIN_MM = 0.5
SHEET_WIDTH_MM = 210.0
SHEET_HEIGHT_MM = 297.0
SHEET_COLUMNS, SHEET_ROWS = 2, 5
SHEET_CARDS_MAX = SHEET_COLUMNS * SHEET_ROWS
CROP_MARK_MM, CROP_GAP_MM = 5.0, 2.0
FONT = "'Noto Sans CJK JP', sans-serif"

# Where things are on the card (millimetres from its top left corner).
_QR_X, _QR_Y = 1.5, 11.5
_TEXT_X = 38.0
_TEXT_WIDTH = CARD_WIDTH_MM - _TEXT_X - 2.5
_HEADER_WIDTH = CARD_WIDTH_MM - 6.0

#: How to check the balance and what to do when the card is lost: (Japanese, English) pairs,
#: the first the heading.
BALANCE_LINES = (
    ("残高の確かめかた", "How to check your balance"),
    ("・お店のレジで支払うとき（レシート）", "At a shop's till when paying (receipt)"),
    ("・市役所の窓口で", "At the city counter"),
    ("・有効期限のお知らせ（郵送）で", "On the expiry letter we post to you"),
    ("暗証番号をスマホに入れないでください", "Never type your PIN into a phone"),
    ("なくしたら市役所の窓口へ", "Lost it? Tell the city counter"),
)


@dataclass(frozen=True, slots=True)
class CityName:
    """The city's name as printed (``Settings.city_name``, ``Settings.city_name_en``)."""

    ja: str
    en: str


@dataclass(frozen=True, slots=True)
class CardFace:
    """What the front of one card shows: its QR text and its 16-digit number."""

    qr_text: str
    number: str

    @classmethod
    def of(cls, card: Card) -> CardFace:
        return cls(qr_text=card.text, number=card.number)


# Printing (counter staff) --------------------------------------------------------------------


def cards_to_print(
    session: Session,
    caller: Principal,
    now: datetime,
    card_ids: Sequence[str],
    *,
    sheet: bool,
) -> list[Card]:
    """The cards to print, in the order asked, each an active card of a resident who may pay
    (``not_found``, ``card_blocked``); every print audited (``card.print``). All are checked
    before any is recorded, so a refusal records nothing."""
    if not 1 <= len(card_ids) <= SHEET_CARDS_MAX or len(set(card_ids)) != len(card_ids):
        raise InvalidInput(
            f"name 1 to {SHEET_CARDS_MAX} different cards to print", field="card_ids"
        )
    found = [_printable(session, card_id) for card_id in card_ids]
    for card in found:
        cards.audit_card(
            session, caller, now, "card.print", card, "", {"last4": card.last4, "sheet": sheet}
        )
    return found


def _printable(session: Session, card_id: str) -> Card:
    card = cards.get_card(session, card_id)
    if card.status != CardStatus.ACTIVE:
        raise CardBlocked(
            "only an active card is printed: this one was blocked or reissued "
            "(print the resident's newest card)"
        )
    resident = session.get(Resident, card.resident_id)
    if resident is None or resident.status != ResidentStatus.ACTIVE or resident.erased_at:
        raise CardBlocked("this card's resident may no longer pay with a card: it is not printed")
    return card


# Rendering -----------------------------------------------------------------------------------


def card_svg(face: CardFace, city: CityName) -> str:
    """One card as an SVG document of ID-1 size (85.6 × 54 mm, a viewBox in millimetres)."""
    return _document(CARD_WIDTH_MM, CARD_HEIGHT_MM, _card(face, city))


def sheet_svg(faces: Sequence[CardFace], city: CityName) -> str:
    """An A4 SVG (210 × 297 mm) of 1 to 10 cards, 2 columns × 5 rows, with crop marks."""
    if not 1 <= len(faces) <= SHEET_CARDS_MAX:
        raise InvalidInput(f"a sheet holds 1 to {SHEET_CARDS_MAX} cards", field="card_ids")
    left = (SHEET_WIDTH_MM - SHEET_COLUMNS * CARD_WIDTH_MM) / 2
    top = (SHEET_HEIGHT_MM - SHEET_ROWS * CARD_HEIGHT_MM) / 2
    parts = [_crop_marks(left, top)]
    for index, face in enumerate(faces):
        column, row = index % SHEET_COLUMNS, index // SHEET_COLUMNS
        x, y = left + column * CARD_WIDTH_MM, top + row * CARD_HEIGHT_MM
        parts.append(f'<g transform="translate({_mm(x)} {_mm(y)})">{_card(face, city)}</g>')
    return _document(SHEET_WIDTH_MM, SHEET_HEIGHT_MM, "".join(parts))


def _document(width: float, height: float, body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" '
        f'width="{_mm(width)}mm" height="{_mm(height)}mm" '
        f'viewBox="0 0 {_mm(width)} {_mm(height)}">'
        f'<rect width="{_mm(width)}" height="{_mm(height)}" fill="#fff"/>'
        f"{body}</svg>\n"
    )


def _card(face: CardFace, city: CityName) -> str:
    """The card's elements, in millimetres from its top left corner."""
    modules = qrrender.matrix(face.qr_text)
    side = len(modules) + 2 * qrrender.QUIET_ZONE
    module = QR_SIDE_MM / side
    if module < MODULE_MIN_MM:
        raise InvalidInput(
            "this card's QR is too dense to print at a size a till reads: shorten the public "
            "origin (POINTS_PUBLIC_URL)"
        )
    qr = (
        f'<g transform="translate({_mm(_QR_X)} {_mm(_QR_Y)}) scale({module:.6f})" '
        'shape-rendering="crispEdges">'
        f'<rect width="{side}" height="{side}" fill="#fff"/>'
        f'<path fill="#000" d="{qrrender.dark_runs(modules)}"/></g>'
    )
    number = _text(
        cards.grouped(face.number),
        x=_QR_X + QR_SIDE_MM / 2,
        y=_QR_Y + QR_SIDE_MM + 4.2,
        size=3.2,
        width=QR_SIDE_MM - 2.0,
        anchor="middle",
        exact=True,
        spacing=True,
    )
    header = (
        _text(f"{city.ja} 地域ポイントカード", x=3, y=6.2, size=3.6, width=_HEADER_WIDTH, bold=True)
        + _text(f"{city.en} points card", x=3, y=9.6, size=2.3, width=_HEADER_WIDTH)
        + '<path d="M3 10.9H82.6" stroke="#000" stroke-width="0.2"/>'
    )
    lines: list[str] = []
    y = 15.0
    for index, (japanese, english) in enumerate(BALANCE_LINES):
        heading = index == 0
        if index in (1, 4):
            y += 0.9  # a little room after the heading and before the warnings
        lines.append(
            _text(
                japanese,
                x=_TEXT_X,
                y=y,
                size=2.5 if heading else 2.25,
                width=_TEXT_WIDTH,
                bold=heading,
            )
        )
        lines.append(_text(english, x=_TEXT_X, y=y + 2.6, size=1.95, width=_TEXT_WIDTH))
        y += 5.9
    return qr + number + header + "".join(lines)


def _crop_marks(left: float, top: float) -> str:
    right = left + SHEET_COLUMNS * CARD_WIDTH_MM
    bottom = top + SHEET_ROWS * CARD_HEIGHT_MM
    near, far = CROP_GAP_MM, CROP_GAP_MM + CROP_MARK_MM
    marks: list[str] = []
    for column in range(SHEET_COLUMNS + 1):
        x = _mm(left + column * CARD_WIDTH_MM)
        marks.append(f"M{x} {_mm(top - far)}V{_mm(top - near)}")
        marks.append(f"M{x} {_mm(bottom + near)}V{_mm(bottom + far)}")
    for row in range(SHEET_ROWS + 1):
        y = _mm(top + row * CARD_HEIGHT_MM)
        marks.append(f"M{_mm(left - far)} {y}H{_mm(left - near)}")
        marks.append(f"M{_mm(right + near)} {y}H{_mm(right + far)}")
    return f'<path d="{"".join(marks)}" stroke="#000" stroke-width="0.15" fill="none"/>'


def _text(
    content: str,
    *,
    x: float,
    y: float,
    size: float,
    width: float,
    anchor: str = "start",
    bold: bool = False,
    exact: bool = False,
    spacing: bool = False,
) -> str:
    """A line of text at baseline ``y``, squeezed to ``width`` when it may be wider (``exact``:
    always exactly ``width``; ``spacing``: by widening the gaps only)."""
    attributes = [
        f'x="{_mm(x)}"',
        f'y="{_mm(y)}"',
        f'font-size="{_mm(size)}"',
        f'font-family="{FONT}"',
    ]
    if bold:
        attributes.append('font-weight="bold"')
    if anchor != "start":
        attributes.append(f'text-anchor="{anchor}"')
    if exact or _estimated_width(content, size) > width:
        adjust = "spacing" if spacing else "spacingAndGlyphs"
        attributes.append(f'textLength="{_mm(width)}" lengthAdjust="{adjust}"')
    return f"<text {' '.join(attributes)}>{escape(content)}</text>"


def _estimated_width(content: str, size: float) -> float:
    """A generous estimate: a wide (CJK) character one em, any other 0.6 em."""
    wide = sum(1 for char in content if unicodedata.east_asian_width(char) in ("W", "F"))
    return size * (wide + 0.6 * (len(content) - wide))


def _mm(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")

"""Print-ready resident cards and the page a card's QR opens on a phone (issue 19), on SQLite
and, when configured, PostgreSQL.

A printed card is read back the way a till reads it: the SVG the counter downloads is
rasterized by a real renderer (resvg, ``resvg-py``) at 300 dpi (a card printer) and at 150 dpi
(a blurry till camera's worth), decoded by an independent decoder (zxing-cpp), and the decoded
text must be the card's QR exactly and find the card through the counter's find route. Every
card of an A4 sheet is decoded too, in the order asked. Printing is refused for a card that is
not active, audited for one that is, and its body is strict.

The page ``GET /Q/{text}`` shows for a card's QR is the same for every card: no form, no PIN
field, no balance, no name, no number, and nothing that tells an active card from a blocked
one.
"""

from __future__ import annotations

import base64
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest
import resvg_py
import sqlalchemy as sa
import zxingcpp
from api_world import RESIDENT_NAME, World, assert_problem
from payment_helpers import ensure_signing_key, funded_resident
from PIL import Image
from token_helpers import LONGEST_ORIGIN, key_ring

from points import qrrender, qrtokens
from points.errors import InvalidInput
from redemption import card_print
from redemption.card_print import CardFace, CityName
from redemption.cards import luhn_digit

C = "/api/v1/counter"
PIN = "4826"
SVG_NS = "{http://www.w3.org/2000/svg}"
PRINT_DPI = 300
#: About what a till's camera resolves of a card held in front of it.
TILL_DPI = 150
CITY = CityName("狛江市", "Komae City")


def issue(world: World) -> dict[str, Any]:
    """A new card of a new resident with 1 pt."""
    ensure_signing_key(world)
    resident = funded_resident(world, 1)
    made = world.client.post(
        f"{C}/residents/{resident.id}/cards", json={"pin": PIN}, headers=world.counter.headers
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def raster(document: str, dpi: int) -> Image.Image:
    png = resvg_py.svg_to_bytes(svg_string=document, dpi=dpi, background="#ffffff")
    return Image.open(io.BytesIO(bytes(png))).convert("L")


def decoded(image: Image.Image) -> list[zxingcpp.Barcode]:
    return list(
        zxingcpp.read_barcodes(
            image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        )
    )


def found_by_qr(world: World, text: str) -> dict[str, Any]:
    response = world.client.post(
        f"{C}/cards/find", json={"card_qr": text}, headers=world.counter.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def audits_of(world: World, card_id: str) -> list[dict[str, Any]]:
    """The card's ``card.print`` events: who, and the details (JSON)."""
    with world.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT actor_id, details FROM audit_event WHERE object_type = 'card' "
                "AND object_id = :card AND action = 'card.print' ORDER BY sequence"
            ),
            {"card": card_id},
        ).mappings()
        return [{**row, "details": json.loads(row["details"])} for row in rows]


# One card -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dpi", [PRINT_DPI, TILL_DPI])
def test_a_printed_card_decodes_to_its_qr_and_finds_the_card(shared_world: World, dpi: int) -> None:
    world = shared_world
    card = issue(world)

    response = world.client.get(f"{C}/cards/{card['id']}/print", headers=world.counter.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == (
        f'inline; filename="card-{card["last4"]}.svg"'
    )
    image = raster(response.text, dpi)
    assert image.size == (round(85.6 / 25.4 * dpi), round(54 / 25.4 * dpi))
    (barcode,) = decoded(image)
    assert barcode.text == card["qr"]
    assert found_by_qr(world, barcode.text)["id"] == card["id"]


def test_the_card_is_id1_sized_and_shows_the_number_but_no_pin_or_name(
    shared_world: World,
) -> None:
    world = shared_world
    card = issue(world)

    document = world.client.get(f"{C}/cards/{card['id']}/print", headers=world.counter.headers).text

    root = ET.fromstring(document)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "85.6mm",
        "54mm",
        "0 0 85.6 54",
    )
    texts = ["".join(element.itertext()) for element in root.iter(f"{SVG_NS}text")]
    assert card["number"] in texts  # grouped in fours, as printed
    assert re.fullmatch(r"\d{4} \d{4} \d{4} \d{4}", card["number"])
    assert any(text.startswith("狛江市") for text in texts)
    assert any("残高" in text for text in texts)
    assert any("balance" in text for text in texts)
    assert PIN not in document.replace(card["number"], "")
    assert RESIDENT_NAME not in document
    assert card["resident_id"] not in document
    # Japanese first: each Japanese line comes before its English line.
    assert texts.index("残高の確かめかた") + 1 == texts.index("How to check your balance")


def test_text_stays_out_of_the_qrs_quiet_zone() -> None:
    """The QR's quiet zone (4 modules) is white all round at 300 dpi, whatever the origin's
    length: the number and the text never run into it."""
    ring = key_ring()
    now = datetime(2026, 4, 1, tzinfo=UTC)
    text = qrtokens.sign(qrtokens.CardToken(b"\xff" * 16), ring, now, origin=LONGEST_ORIGIN)
    number = "9" * 15
    face = CardFace(text, number + luhn_digit(number))
    image = raster(
        card_print.card_svg(face, CityName("長い名前の市" * 6, "A Long City Name" * 4)), 300
    )
    (barcode,) = decoded(image)
    assert barcode.text == text
    side = len(qrrender.matrix(text)) + 2 * qrrender.QUIET_ZONE
    module = card_print.QR_SIDE_MM / side
    assert module >= card_print.MODULE_MIN_MM
    px = 300 / 25.4

    def white(x0: float, y0: float, x1: float, y1: float) -> bool:
        box = (round(x0 * px) + 1, round(y0 * px) + 1, round(x1 * px) - 1, round(y1 * px) - 1)
        low = image.crop(box).getextrema()[0]  # the darkest grey in the box
        return isinstance(low, int) and low > 200

    x, y, quiet = 1.5, 11.5, 4 * module  # card_print's _QR_X, _QR_Y
    end = card_print.QR_SIDE_MM
    assert white(x, y, x + end, y + quiet)  # top
    assert white(x, y + end - quiet, x + end, y + end)  # bottom
    assert white(x, y, x + quiet, y + end)  # left
    assert white(x + end - quiet, y, x + end, y + end)  # right
    assert not white(x + quiet, y + quiet, x + end - quiet, y + end - quiet)  # the code itself


def test_a_qr_too_dense_for_a_till_is_not_printed() -> None:
    number = "1" * 15
    with pytest.raises(InvalidInput, match="too dense"):
        card_print.card_svg(CardFace("A" * 400, number + luhn_digit(number)), CITY)


def test_only_an_active_card_is_printed_and_each_print_is_audited(shared_world: World) -> None:
    world = shared_world
    card = issue(world)
    url = f"{C}/cards/{card['id']}/print"

    assert world.client.get(url, headers=world.counter.headers).status_code == 200
    (event,) = audits_of(world, card["id"])
    assert event["actor_id"] == world.counter.id
    assert event["details"] == {
        "resident_id": card["resident_id"],
        "last4": card["last4"],
        "sheet": False,
    }

    blocked = world.client.post(
        f"{C}/cards/{card['id']}/block", json={"reason": "lost"}, headers=world.counter.headers
    )
    assert blocked.status_code == 200, blocked.text
    before = world.snapshot()
    assert_problem(world.client.get(url, headers=world.counter.headers), 409, "card_blocked")
    assert world.snapshot() == before
    assert len(audits_of(world, card["id"])) == 1

    missing = world.client.get(f"{C}/cards/crd_nosuchcard/print", headers=world.counter.headers)
    body = assert_problem(missing, 404, "not_found")
    assert RESIDENT_NAME not in missing.text and "res_" not in body["detail"]


# The A4 sheet -------------------------------------------------------------------------------


def test_every_card_of_an_a4_sheet_decodes_in_order(shared_world: World) -> None:
    world = shared_world
    made = [issue(world) for _ in range(card_print.SHEET_CARDS_MAX)]

    response = world.client.post(
        f"{C}/cards/print-sheet",
        json={"card_ids": [card["id"] for card in made]},
        headers=world.counter.headers,
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(response.text)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "210mm",
        "297mm",
        "0 0 210 297",
    )
    image = raster(response.text, PRINT_DPI)
    found = decoded(image)
    assert len(found) == len(made)
    # Row by row, left to right (2 columns): the order asked.
    middle = image.size[0] / 2
    ordered = sorted(
        found,
        key=lambda barcode: (
            round(barcode.position.top_left.y / (image.size[1] / 10)),
            barcode.position.top_left.x > middle,
        ),
    )
    assert [barcode.text for barcode in ordered] == [card["qr"] for card in made]
    for barcode, card in zip(ordered, made, strict=True):
        assert found_by_qr(world, barcode.text)["id"] == card["id"]
    for card in made:
        (event,) = audits_of(world, card["id"])
        assert event["actor_id"] == world.counter.id and event["details"]["sheet"] is True
    # A sheet of one decodes too, at a till's resolution.
    one = world.client.post(
        f"{C}/cards/print-sheet", json={"card_ids": [made[0]["id"]]}, headers=world.counter.headers
    )
    (barcode,) = decoded(raster(one.text, TILL_DPI))
    assert barcode.text == made[0]["qr"]


def test_the_sheet_has_crop_marks_at_every_cut_line() -> None:
    number = "5" * 15
    face = CardFace("HTTP://127.0.0.1:8000/Q/" + "A" * 135, number + luhn_digit(number))
    document = card_print.sheet_svg([face], CITY)
    root = ET.fromstring(document)
    marks = [
        element
        for element in root.iter(f"{SVG_NS}path")
        if element.get("stroke") == "#000" and element.get("fill") == "none"
    ]
    (path,) = marks
    # (2 + 1) vertical cut lines × 2 ends + (5 + 1) horizontal × 2 ends.
    assert path.get("d", "").count("M") == 3 * 2 + 6 * 2
    with pytest.raises(InvalidInput):
        card_print.sheet_svg([face] * 11, CITY)
    with pytest.raises(InvalidInput):
        card_print.sheet_svg([], CITY)


def test_a_sheet_with_a_card_that_is_not_active_prints_nothing(shared_world: World) -> None:
    world = shared_world
    good, bad = issue(world), issue(world)
    world.client.post(
        f"{C}/cards/{bad['id']}/block", json={"reason": "stolen"}, headers=world.counter.headers
    )
    before = world.snapshot()

    response = world.client.post(
        f"{C}/cards/print-sheet",
        json={"card_ids": [good["id"], bad["id"]]},
        headers=world.counter.headers,
    )

    assert_problem(response, 409, "card_blocked")
    assert world.snapshot() == before
    assert audits_of(world, good["id"]) == []
    unknown = world.client.post(
        f"{C}/cards/print-sheet",
        json={"card_ids": [good["id"], "crd_nosuchcard"]},
        headers=world.counter.headers,
    )
    assert_problem(unknown, 404, "not_found")
    assert world.snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"card_ids": []},
        {"card_ids": ["crd_a"] * 2},
        {"card_ids": [f"crd_{index}" for index in range(11)]},
        {"card_ids": "crd_a"},
        {"card_ids": [1]},
        {"card_ids": ["not an id"]},
        {"card_ids": ["crd_a"], "resident_id": "res_a"},
        [],
    ],
)
def test_the_sheets_body_is_strict(shared_world: World, body: Any) -> None:
    world = shared_world
    before = world.snapshot()

    response = world.client.post(f"{C}/cards/print-sheet", json=body, headers=world.counter.headers)

    assert_problem(response, 422, "validation_error")
    assert world.snapshot() == before


# The page a card's QR opens on a phone -------------------------------------------------------


def page_of(world: World, text: str, *, lowercase: bool = False) -> Any:
    tail = text.split("/Q/", 1)[1]
    return world.client.get(f"/q/{tail.lower()}" if lowercase else f"/Q/{tail}")


def test_a_cards_qr_opens_a_page_with_no_form_balance_name_or_state(shared_world: World) -> None:
    world = shared_world
    card = issue(world)

    response = page_of(world, card["qr"])

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    page = response.text
    assert page.index('lang="ja"') < page.index('lang="en"')  # Japanese first
    assert "どこで" in page and "How to check the balance" in page
    assert "狛江市" in page and "Komae City" in page
    for where in ("レジ", "窓口", "有効期限のお知らせ", "till", "city counter", "expiry letter"):
        assert where in page
    assert "<input" not in page.lower() and "<form" not in page.lower()
    digits = re.sub(r"\D", "", card["number"])
    assert digits not in re.sub(r"\D", "", page)
    assert card["last4"] not in page and card["number"] not in page
    assert RESIDENT_NAME not in page and card["resident_id"] not in page
    assert "1 pt" not in page and "残高は" not in page.replace("残高はどこで", "")

    # The same page for the card in lowercase, once blocked, and for a forged "card".
    assert page_of(world, card["qr"], lowercase=True).text == page
    world.client.post(
        f"{C}/cards/{card['id']}/block", json={"reason": "lost"}, headers=world.counter.headers
    )
    assert page_of(world, card["qr"]).text == page
    forged = bytes([qrtokens.VERSION, qrtokens.Kind.CARD, 0, 1]) + b"\0" * (16 + 64)
    tail = base64.b32encode(forged).decode().rstrip("=")
    assert page_of(world, f"X/Q/{tail}").text == page


def test_other_tokens_still_open_the_wallet_page(shared_world: World) -> None:
    store = bytes([qrtokens.VERSION, qrtokens.Kind.STORE, 0, 1]) + b"\0" * (16 + 64)
    tail = base64.b32encode(store).decode().rstrip("=")
    page = shared_world.client.get(f"/Q/{tail}").text
    assert "ウォレットで読み取ってください" in page
    assert "どこで" not in page
    assert qrtokens.unverified_kind(tail) is qrtokens.Kind.STORE
    assert qrtokens.unverified_kind("A" * 135) is None  # version 0
    assert qrtokens.unverified_kind("1" * 135) is None  # not base32

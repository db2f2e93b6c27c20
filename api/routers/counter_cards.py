"""City counter staff: residents' cards (issue 19; ``redemption.cards``).

Counter staff issue a card to a verified resident, who chooses the PIN on the staff device;
find a card by its QR or number; block a lost or stolen card and reissue it (a new id and
number, the balance untouched); unlock a card after 5 wrong PINs once they checked the
resident's identity; change a PIN with the old PIN or after an identity check; and print an
active card (one ID-1 SVG, or an A4 sheet of up to 10: ``redemption.card_print``). Every act
is audited with the reason; a PIN is never returned, logged or audited.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import CounterDep, Services, ServicesDep
from api.schemas import PROTECTED_ERRORS, PathId, ReasonInput
from api.schemas_cards import (
    CardIssue,
    CardLookup,
    CardPrintSheet,
    CardPublic,
    CardReissue,
    PinChange,
)
from points.calendar import tokyo_date
from points.people import get
from points.registry import Resident
from redemption import card_print, cards

router = APIRouter(
    prefix="/api/v1/counter", tags=["counter"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)


@router.post(
    "/residents/{resident_id}/cards",
    status_code=201,
    response_model=CardPublic,
    summary="Issue a card to a verified resident, with the PIN they chose",
)
def issue_card(
    resident_id: PathId, body: CardIssue, caller: CounterDep, services: ServicesDep
) -> CardPublic:
    """A card (its QR and 16-digit number) for a verified, active resident, who typed a PIN of 4
    to 6 digits on the staff device. Refusals: `pin_invalid` (a trivial PIN such as 0000, 1234
    or the resident's birth year), `card_exists` (block and reissue instead),
    `resident_not_active`, `validation_error` (not verified yet)."""
    now, signing = services.clock(), services.card_signing

    def work(session: Session) -> CardPublic:
        issued = cards.issue_card(session, caller, now, resident_id, body.pin, signing=signing)
        return CardPublic.of(issued.card)

    return services.write(work)


@router.get(
    "/residents/{resident_id}/cards",
    response_model=list[CardPublic],
    summary="A resident's cards, the active one and those it replaced",
)
def resident_cards(
    resident_id: PathId, caller: CounterDep, services: ServicesDep
) -> list[CardPublic]:
    """Every card the resident was issued, oldest first."""

    def work(session: Session) -> list[CardPublic]:
        get(session, Resident, resident_id)
        return [CardPublic.of(card) for card in cards.cards_of(session, resident_id)]

    return services.read(work)


@router.post("/cards/find", response_model=CardPublic, summary="Find a card by its QR or number")
def find_card(body: CardLookup, caller: CounterDep, services: ServicesDep) -> CardPublic:
    """The card the resident handed over: its scanned QR (`card_qr`) or its typed number
    (`card_number`). A blocked or replaced card is found too (its `status` says so).
    Refusals: `card_number_invalid`, `token_*` (422), `not_found`."""
    now, signing = services.clock(), services.card_signing

    def work(session: Session) -> CardPublic:
        card = cards.find_card(
            session, card_number=body.card_number, card_qr=body.card_qr, signing=signing, now=now
        )
        return CardPublic.of(card)

    return services.read(work)


@router.post("/cards/{card_id}/block", response_model=CardPublic, summary="Block a lost card")
def block_card(
    card_id: PathId, body: ReasonInput, caller: CounterDep, services: ServicesDep
) -> CardPublic:
    """Blocks a lost or stolen card at once (audited with the reason): tills and the counter
    refuse it (`card_blocked`). The resident's points stay; reissue the card to pay again."""
    now = services.clock()

    def work(session: Session) -> CardPublic:
        return CardPublic.of(cards.block_card(session, caller, now, card_id, body.reason))

    return services.write(work)


@router.post(
    "/cards/{card_id}/reissue",
    status_code=201,
    response_model=CardPublic,
    summary="A new card in place of a lost, stolen or worn one",
)
def reissue_card(
    card_id: PathId, body: CardReissue, caller: CounterDep, services: ServicesDep
) -> CardPublic:
    """A new card (new QR and number) for the same resident; the old one is refused from now on.
    The PIN stays unless the resident chooses a new one (`pin`); the count of wrong PINs starts
    again. Audited with the reason. Refusals: `card_blocked` (a card reissued already: reissue
    the newest), `pin_invalid`, `resident_not_active`."""
    now, signing = services.clock(), services.card_signing

    def work(session: Session) -> CardPublic:
        issued = cards.reissue_card(
            session, caller, now, card_id, body.reason, pin=body.pin, signing=signing
        )
        return CardPublic.of(issued.card)

    return services.write(work)


@router.post(
    "/cards/{card_id}/unlock",
    response_model=CardPublic,
    summary="Unlock a card after 5 wrong PINs, once the resident's identity is checked",
)
def unlock_card(
    card_id: PathId, body: ReasonInput, caller: CounterDep, services: ServicesDep
) -> CardPublic:
    """Counter staff checked the resident's identity (the reason says how): the count of wrong
    PINs starts again. Audited. Refusal: `card_blocked`."""
    now = services.clock()

    def work(session: Session) -> CardPublic:
        return CardPublic.of(cards.unlock_card(session, caller, now, card_id, body.reason))

    return services.write(work)


@router.post("/cards/{card_id}/pin", response_model=CardPublic, summary="Change a card's PIN")
def change_pin(
    card_id: PathId, body: PinChange, caller: CounterDep, services: ServicesDep
) -> CardPublic:
    """The resident types the old PIN (`old_pin`, counted like any attempt: `pin_incorrect`,
    `card_locked`), or staff checked the resident's identity (`reason` says how), and the
    resident types the new one. Audited; the PINs never are."""
    now, pepper = services.clock(), services.keys
    if body.old_pin is not None:
        cards.verify_pin(
            services.engine,
            now,
            card_id,
            body.old_pin,
            staff_id=caller.principal_id,
            till_id=None,
            pepper=pepper.pin_pepper(),
        )

    def work(session: Session) -> CardPublic:
        card = cards.change_pin_checked(
            session,
            caller,
            now,
            card_id,
            body.new_pin,
            reason=body.reason,
            old_pin_correct=body.old_pin is not None,
            pepper=pepper,
        )
        return CardPublic.of(card)

    return services.write(work)


# Printing ------------------------------------------------------------------------------------

SVG = "image/svg+xml"
_SVG_RESPONSE: dict[int | str, dict[str, object]] = {
    200: {
        "description": "An SVG document to print",
        "content": {SVG: {"schema": {"type": "string"}}},
    }
}


def _city(services: Services) -> card_print.CityName:
    return card_print.CityName(services.settings.city_name, services.settings.city_name_en)


def _svg(document: str, filename: str) -> Response:
    """An SVG to print: not cached (a card's QR stays off shared caches), named for saving."""
    return Response(
        document,
        media_type=SVG,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'inline; filename="{filename}"',
        },
    )


@router.get(
    "/cards/{card_id}/print",
    response_class=Response,
    responses=_SVG_RESPONSE,
    summary="One active card, print-ready (ID-1 SVG, 85.6 × 54 mm)",
)
def print_card(card_id: PathId, caller: CounterDep, services: ServicesDep) -> Response:
    """The front of the card as an SVG of ID-1 size: its QR (what a till scans), its number in
    groups of four, the city's name and how to check the balance (Japanese first). No PIN and
    no name are printed. Only an active card of a resident who may pay is printed
    (`card_blocked`); the print is audited (`card.print`)."""
    now, city = services.clock(), _city(services)

    def work(session: Session) -> card_print.CardFace:
        (card,) = card_print.cards_to_print(session, caller, now, [card_id], sheet=False)
        return card_print.CardFace.of(card)

    face = services.write(work)
    return _svg(card_print.card_svg(face, city), f"card-{face.number[-4:]}.svg")


@router.post(
    "/cards/print-sheet",
    response_class=Response,
    responses=_SVG_RESPONSE,
    summary="Up to 10 active cards on an A4 sheet with crop marks (SVG)",
)
def print_sheet(body: CardPrintSheet, caller: CounterDep, services: ServicesDep) -> Response:
    """An A4 SVG (210 × 297 mm) of 1 to 10 different cards (`card_ids`, in order: 2 columns ×
    5 rows, with crop marks), for batch printing at the counter. Every card must be active
    (`card_blocked`, `not_found`: nothing is printed then); each print is audited."""
    now, city = services.clock(), _city(services)

    def work(session: Session) -> list[card_print.CardFace]:
        printed = card_print.cards_to_print(session, caller, now, body.card_ids, sheet=True)
        return [card_print.CardFace.of(card) for card in printed]

    faces = services.write(work)
    return _svg(card_print.sheet_svg(faces, city), f"cards-{tokyo_date(now).isoformat()}.svg")

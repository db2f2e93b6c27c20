"""Public endpoints: health, readiness, wallet enrolment, the QR signing keys, and the page a QR
code's URL opens (no token needed)."""

from __future__ import annotations

import html
import logging
import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlmodel import Session

from api import sessions
from api.bodies import StrictRoute
from api.deps import Services, ServicesDep
from api.errors import PROBLEM_JSON, problem
from api.safety import rate_limited
from api.schemas import (
    EnrolmentRedeem,
    Health,
    PublicKey,
    PublicKeySet,
    WalletEnrolled,
    error_responses,
)
from points import access, db, keys, qrtokens
from points.errors import PointsError, SelfEnrolmentClosed, TokenMalformed, Unavailable

log = logging.getLogger("api")
router = APIRouter(tags=["public"], route_class=StrictRoute)


@router.get("/healthz", response_model=Health, summary="The process is alive")
def healthz() -> Health:
    """Liveness: 200 as long as the process answers. It does not touch the database; use `/readyz`
    for that."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The database is reachable and migrated to the latest schema",
    responses=error_responses(503),
)
def readyz(services: ServicesDep) -> Health | JSONResponse:
    """Readiness: 200 when the database is reachable and migrated to the latest schema (a load
    balancer sends traffic only then), otherwise 503 `unavailable` saying why."""
    try:
        revision = db.current_revision(services.engine)
    except Exception:
        return problem(503, "unavailable", "the database is not reachable")
    head = db.head_revision()
    if revision != head:
        return problem(
            503,
            "unavailable",
            f"the database schema is at {revision}, not {head}; run `points db upgrade`",
        )
    return Health(status="ready", database=services.engine.dialect.name, schema_revision=revision)


@router.post(
    "/api/v1/enrolments/self",
    response_model=WalletEnrolled,
    status_code=201,
    summary="Start a wallet without visiting the counter (self-enrolled)",
    responses=error_responses(403, 429, 503),
    dependencies=[rate_limited("self_enrolment")],
)
def self_enrol(services: ServicesDep) -> WalletEnrolled:
    """Creates a new self-enrolled resident (no personal data) and returns a wallet token for this
    phone, shown once. Takes no body (or `{}`). Rate-limited per client address (429 with
    Retry-After); counter staff can verify the resident later. 403 `self_enrolment_closed`
    where the city does not allow it (`POINTS_SELF_ENROLMENT=false`)."""
    if not services.settings.self_enrolment:
        raise SelfEnrolmentClosed("start your wallet with a code from the city counter")
    now = services.clock()

    def work(session: Session) -> WalletEnrolled:
        resident, new = access.self_enrol(session, now)
        return WalletEnrolled(
            resident_id=resident.id, token=new.secret, expires_at=new.token.expires_at
        )

    return services.write(work)


@router.post(
    "/api/v1/enrolments/code",
    response_model=WalletEnrolled,
    status_code=201,
    summary="Bind this phone to a verified resident's wallet with a code from the counter",
    responses=error_responses(409, 422, 429, 503),
    dependencies=[rate_limited("enrolment_code_attempt")],
)
def enrol_with_code(body: EnrolmentRedeem, services: ServicesDep) -> WalletEnrolled:
    """Redeems a single-use, 15-minute enrolment code that counter staff issued for a verified
    resident, and returns a wallet token for this phone, shown once. A code works once
    (`enrolment_code_used`), expires (`enrolment_code_expired`), and a wrong one is
    `enrolment_code_invalid`; attempts are rate-limited per client address."""
    now = services.clock()

    def work(session: Session) -> WalletEnrolled:
        new = access.redeem_enrolment_code(
            session, now, body.code, secret_key=services.settings.secret_key_bytes
        )
        return WalletEnrolled(
            resident_id=new.token.principal_id, token=new.secret, expires_at=new.token.expires_at
        )

    return services.write(work)


@router.get(
    "/api/v1/keys",
    response_model=PublicKeySet,
    summary="The public keys that verify QR codes (cacheable)",
    responses=error_responses(503),
)
def public_keys(services: ServicesDep, response: Response) -> PublicKeySet:
    """The Ed25519 public keys of the signed QR codes, so that wallets and third parties verify
    tokens offline: the `active` key (it signs now) and the `verifying` ones (rotated away; the
    tokens they signed still verify). A token whose key id is not listed is refused, and so is
    one of a retired key (retired keys are not listed). Cacheable for five minutes; a verifier
    meeting an unknown key id fetches the list again."""
    try:
        published = services.keys.public_keys()
    except PointsError as error:
        # An unreadable key directory is the operator's to fix: its path stays in the log.
        log.error("the signing keys cannot be read: %s", error.message)
        raise Unavailable("the signing keys cannot be read; try again later") from error
    response.headers["Cache-Control"] = "public, max-age=300"
    return PublicKeySet(
        keys=[
            PublicKey(
                kid=info.kid,
                algorithm=keys.ALGORITHM,
                public_key=info.public_key_text,
                status=info.status.value,
                valid_from=info.created_at,
                valid_until=None,
            )
            for info in published
            if info.status is not keys.KeyStatus.RETIRED
        ]
    )


# QR codes opened by a phone's own camera -------------------------------------------------------

#: What a token's base32 part looks like (``points.qrtokens``): only its alphabet (either case),
#: between the shortest and the longest kind's length.
_TOKEN_TEXT = re.compile(
    rf"[A-Za-z2-7]{{{qrtokens.TEXT_LENGTHS[0]},{qrtokens.TEXT_LENGTHS[1]}}}", re.ASCII
)
_OPEN_IN_WALLET = """<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>ウォレットで読み取ってください</title>
</head>
<body>
<main>
<h1>ウォレットで読み取ってください</h1>
<p>このQRコードは、地域ポイントのウォレットで読み取ります。</p>
<ol>
<li><a href="/app/">ウォレットを開きます</a>（ホーム画面に追加したアイコンからも開けます）。</li>
<li>「読み取る」を押して、もう一度このQRコードにカメラを向けてください。</li>
</ol>
<p>ウォレットをまだお持ちでない方は、市役所窓口でお申し込みください。</p>
<div lang="en">
<h2>Scan this code in the wallet</h2>
<p><a href="/app/">Open the points wallet</a>, press "Scan" and point the camera at this code
again. No wallet yet? Ask at the city counter.</p>
</div>
</main>
</body>
</html>
"""


_CARD_PAGE = """<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{city}の地域ポイントカード</title>
</head>
<body>
<main>
<h1>{city}の地域ポイントカードです</h1>
<p>このQRコードは、お店のレジでカードで支払うときに、お店が読み取ります。
スマートフォンでは使えません。</p>
<h2>残高はどこで確かめられますか</h2>
<ul>
<li>お店のレジで：カードで支払うと、レシートに残高が出ます。</li>
<li>市役所の窓口で：カードをお持ちください。</li>
<li>有効期限のお知らせ（郵送）で：カード番号の下4桁と、期限が近いポイントをお知らせします。</li>
</ul>
<p>暗証番号は、お店のレジと市役所の窓口の端末でだけ入力します。このページやほかのウェブページ、
スマートフォンに入力しないでください。</p>
<p>カードを拾った方は、市役所の窓口にお届けください。</p>
<div lang="en">
<h2>This is a {city_en} points card</h2>
<p>A shop scans this code at the till when the card pays. It does not work on a phone.</p>
<h3>How to check the balance</h3>
<ul>
<li>At a shop's till: pay with the card, and the receipt shows the balance.</li>
<li>At the city counter: bring the card.</li>
<li>On the expiry letter we post: it shows the card's last four digits and the points that
expire soon.</li>
</ul>
<p>The PIN is typed only on a shop's till or at the city counter. Never type it on this page,
on any other web page, or on a phone.</p>
<p>Found this card? Please hand it in at the city counter.</p>
</div>
</main>
</body>
</html>
"""


def _card_page(services: Services) -> str:
    """The page a card's QR opens on a phone: what the card is and where to check its balance.
    The same for every card text, whatever the card's state, so that it tells nothing: no
    form, no PIN field (a page asking for a PIN is what phishing looks like, and a balance
    behind a PIN would make the card number and a phone a way to guess PINs), no balance, no
    name, and not even whether the card is active (an oracle for a found card's worth)."""
    return _CARD_PAGE.format(
        city=html.escape(services.settings.city_name),
        city_en=html.escape(services.settings.city_name_en),
    )


def _open_in_wallet(text: str, request: Request, services: Services) -> Response:
    """A resident's card (its kind read from the text, unverified: the page says nothing that
    depends on it) gets the card page. Otherwise a phone whose browser holds a live wallet
    session goes straight to the scanned code in the app (the text after ``#``, which no server
    and no Referer sees); any other gets the page."""
    if _TOKEN_TEXT.fullmatch(text) is None:
        return problem(422, TokenMalformed.code, "not a QR code of this service")
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    if qrtokens.unverified_kind(text) is qrtokens.Kind.CARD:
        return HTMLResponse(_card_page(services), headers=headers)
    secret = request.cookies.get(sessions.SESSION_COOKIE)
    if secret is not None:
        now = services.clock()
        try:
            services.read(lambda session: access.authenticate_session(session, secret, now))
        except PointsError:
            pass
        else:
            return RedirectResponse(f"/app/#/q/{text.upper()}", status_code=303, headers=headers)
    return HTMLResponse(_OPEN_IN_WALLET, headers=headers)


@router.get(
    "/Q/{text}",
    response_class=HTMLResponse,
    summary="A signed QR code opened by a phone's camera: a page that sends it to the wallet",
    responses={
        422: {
            "description": "Not a token's text (`token_malformed`)",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    },
)
def open_qr(text: str, request: Request, services: ServicesDep) -> Response:
    """The URL every QR code of the system carries (`docs/tokens.md`). A phone's own camera
    opens it. With a live session of the wallet app in this browser (its cookie), 303 to the
    app at `/app/#/q/{text}`, which previews the code; otherwise a page (Japanese first) that
    explains how to open the code in the wallet. A resident's card (kind 4) always gets a page
    of its own instead: a city points card, and where to check its balance (a shop's till, the
    city counter, the expiry letter); no form, no balance, no name, nor whether the card is
    active. The token is not verified here: any text that
    looks like a token (base32 letters, either case, of a token's length) gets the page or the
    redirect, anything else 422 `token_malformed`. Public; matched case-insensitively
    (`/q/...` too); not cached, and no Referer carries the token on."""
    return _open_in_wallet(text, request, services)


@router.get("/q/{text}", response_class=HTMLResponse, include_in_schema=False)
def open_qr_lowercase(text: str, request: Request, services: ServicesDep) -> Response:
    """`/Q/{text}` typed in lowercase."""
    return _open_in_wallet(text, request, services)

"""The browser tests' own machinery, without the wallet app: the live server answers on each
database, the city's helpers work through the real API, Chromium launches, and the fake camera
shows the QR code it was given (decoded from a frame the page grabbed, by zxing-cpp), again after
``camera.show`` changes it: Chromium reads the .y4m file again each time the camera is opened."""

from __future__ import annotations

import base64
import io

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page

from .camera import FakeCamera
from .live import EVENT_POINTS, SHOP_NAME_JA, City, Server, call, expect_status

pytestmark = pytest.mark.browser

#: Opens the camera, draws one frame into a canvas, stops the camera: the frame as a PNG.
GRAB_FRAME = """async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: true});
  const video = document.createElement('video');
  video.muted = true;
  video.srcObject = stream;
  await video.play();
  await new Promise(resolve => requestAnimationFrame(resolve));
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  stream.getTracks().forEach(track => track.stop());
  return canvas.toDataURL('image/png');
}"""
HOLD_CAMERA = """async () => {
  window.heldStream = await navigator.mediaDevices.getUserMedia({video: true});
  return true;
}"""
RELEASE_CAMERA = "() => { window.heldStream.getTracks().forEach(t => t.stop()); return true; }"


def decoded(data_url: str) -> str | None:
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    found = zxingcpp.read_barcodes(image)
    return found[0].text if found else None


def test_the_server_and_the_city(live: Server, city: City) -> None:
    ready = expect_status(call(live.url, "GET", "/readyz"), 200, "readyz")
    assert ready["database"] == live.backend
    config = expect_status(call(live.url, "GET", "/api/v1/wallet-app"), 200, "wallet-app")
    assert config["self_enrolment"] is True

    # A resident: points of today and points of a year ago (expiring at the end of the month).
    resident = city.new_resident(1_200, expiring=500)
    wallet = city.wallet(resident)
    assert wallet["balance"] == 1_700
    assert sorted(line["amount"] for line in wallet["by_expiry"]) == [500, 1_200]
    resident_id, counter_code = resident
    assert resident_id.startswith("res_") and len(counter_code) == 12

    # The counter code starts a session of the wallet app (as the app sends it).
    started = call(
        live.url,
        "POST",
        "/api/v1/sessions/code",
        body={"code": counter_code},
        headers={"X-Points-Client": "wallet", "Origin": live.url},
    )
    assert started.status == 201, started.body
    assert "points_session=" in started.headers.get("set-cookie", "")

    # A payment QR of the shop, paid by the resident through the API.
    text = city.payment_request(300, reference="infra")
    assert text.startswith(live.url.upper() + "/Q/")
    paid = call(
        live.url,
        "POST",
        "/api/v1/me/payments",
        body={"token": text},
        token=resident.token,
        idempotent=True,
    )
    assert expect_status(paid, 201, "paying")["state"] == "posted"
    assert city.balance(resident) == 1_400

    # The store QR: the shop confirms one payment and declines another.
    for amount, resolve, state in ((200, city.confirm, "posted"), (100, city.decline, "voided")):
        pending = call(
            live.url,
            "POST",
            "/api/v1/me/payments",
            body={"token": city.store_qr, "amount": amount},
            token=resident.token,
            idempotent=True,
        )
        assert expect_status(pending, 201, "store QR")["state"] == "pending"
        assert city.pending_payment(amount)["id"] == pending.body["id"]
        assert resolve(pending.body["id"])["state"] == state
    assert city.balance(resident) == 1_200

    # A pay code, used by the shop.
    code = expect_status(
        call(live.url, "POST", "/api/v1/me/pay-codes", body={}, token=resident.token),
        201,
        "a pay code",
    )
    assert city.pay_with_code(code["token"], 150)["state"] == "posted"
    assert city.balance(resident) == 1_050
    assert [p["merchant_name_ja"] for p in city.resident_payments(resident)][:1] == [SHOP_NAME_JA]
    assert len([p for p in city.payments() if p["customer"]]) >= 4

    # The event's QR of now: a check-in earns its points.
    checked_in = call(
        live.url,
        "POST",
        "/api/v1/me/check-ins",
        body={"token": city.event_qr()},
        token=resident.token,
        idempotent=True,
    )
    assert expect_status(checked_in, 201, "check-in")["amount"] == EVENT_POINTS
    assert city.balance(resident) == 1_050 + EVENT_POINTS
    assert city.pay_code_limit(resident) == 5_000


def test_chromium_and_the_fake_camera(
    browser: Browser, page: Page, camera: FakeCamera, city: City
) -> None:
    page.goto("/healthz")  # any page of 127.0.0.1: a secure context, the camera allowed
    first = city.payment_request(120)
    camera.show(first)
    assert decoded(page.evaluate(GRAB_FRAME)) == first
    # Shown anew, read anew: each opening of the camera reads the file again.
    camera.show(city.store_qr)
    assert decoded(page.evaluate(GRAB_FRAME)) == city.store_qr

    # While a track holds the camera, the picture does not change, in any page of the browser.
    page.evaluate(HOLD_CAMERA)
    camera.show(first)
    other = browser.new_context(base_url=city.server.url)
    try:
        elsewhere = other.new_page()
        elsewhere.goto("/healthz")
        assert decoded(elsewhere.evaluate(GRAB_FRAME)) == city.store_qr
        page.evaluate(RELEASE_CAMERA)
        assert decoded(elsewhere.evaluate(GRAB_FRAME)) == first
    finally:
        other.close()

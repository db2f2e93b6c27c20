"""QR rendering (``points.qrrender``): every token kind at its largest field values fits QR
version 10 at error correction M, and an independent decoder (zxing-cpp) reads back exactly the
text from the PNG at the sizes screens show and from the SVG rasterized at print sizes."""

from __future__ import annotations

import dataclasses
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from datetime import UTC, datetime

import pytest
import zxingcpp
from token_helpers import LONGEST_ORIGIN, key_ring, largest

from points import errors, qrrender, qrtokens
from points.qrtokens import Kind

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
#: Screen widths in pixels the wallet and a shop's device show codes at.
SCREEN_PIXELS = (200, 320, 600)
#: Printed widths in millimetres (a card, a till sticker, a poster) and the printer's dots per inch.
PRINT_MM = (20, 35, 80)
PRINT_DPI = 300


RING = key_ring()


def text_of(kind: Kind) -> str:
    return qrtokens.sign(largest(kind, NOW), RING, NOW, origin=LONGEST_ORIGIN)


def verified(kind: Kind, decoded: list[str]) -> None:
    """The decoded text verifies to the token that was signed: sign, render, decode, verify."""
    (text,) = decoded
    token = qrtokens.verify(text, expect={kind}, keys=RING, now=NOW, origin=LONGEST_ORIGIN)
    assert token == dataclasses.replace(largest(kind, NOW), kid=token.kid)


def decode(pixels: bytes, width: int, height: int) -> list[str]:
    image = memoryview(pixels).cast("B", (height, width))
    found = zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    return [barcode.text for barcode in found]


def read_png(data: bytes) -> tuple[bytes, int, int]:
    """The grey pixels of an 8-bit greyscale, unfiltered PNG (what ``qrrender.png`` writes),
    its chunks' CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) == (8, 0, 0)
    raw = zlib.decompress(idat)
    stride = width + 1
    assert len(raw) == stride * height
    assert all(raw[row * stride] == 0 for row in range(height))
    pixels = b"".join(raw[row * stride + 1 : (row + 1) * stride] for row in range(height))
    return pixels, width, height


def rasterize_svg(document: str, dpi: int) -> tuple[bytes, int]:
    """The SVG's dark runs painted at ``dpi``: each pixel takes the colour at its centre."""
    root = ET.fromstring(document)
    size_mm = float(root.attrib["width"].removesuffix("mm"))
    assert root.attrib["height"] == root.attrib["width"]
    _, _, side, _ = (int(value) for value in root.attrib["viewBox"].split())
    pixels = round(size_mm / 25.4 * dpi)
    dark = [[False] * side for _ in range(side)]
    path = root.find("{http://www.w3.org/2000/svg}path")
    assert path is not None
    for x, y, width in re.findall(r"M(\d+),(\d+)h(\d+)v1h-\3z", path.attrib["d"]):
        for column in range(int(x), int(x) + int(width)):
            dark[int(y)][column] = True
    assert re.sub(r"M(\d+),(\d+)h(\d+)v1h-\3z", "", path.attrib["d"]) == ""
    image = bytearray()
    for row in range(pixels):
        module_row = dark[int((row + 0.5) * side / pixels)]
        for column in range(pixels):
            image.append(0 if module_row[int((column + 0.5) * side / pixels)] else 255)
    return bytes(image), pixels


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_at_its_largest_fits_version_10_in_alphanumeric_mode(kind: Kind) -> None:
    text = text_of(kind)
    assert len(LONGEST_ORIGIN) == 40
    assert qrrender.version(text) <= 10
    assert len(qrrender.matrix(text)) == 17 + 4 * qrrender.version(text)


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("pixels", SCREEN_PIXELS)
def test_a_png_decodes_to_exactly_the_text(kind: Kind, pixels: int) -> None:
    text = text_of(kind)
    image, width, height = read_png(qrrender.png(text, pixels))
    assert width == height <= pixels
    side = len(qrrender.matrix(text)) + 8
    assert width % side == 0  # whole pixels per module
    assert image[: width * 4 * (width // side)] == b"\xff" * (width * 4 * (width // side))
    assert decode(image, width, height) == [text]
    verified(kind, decode(image, width, height))


@pytest.mark.parametrize("quick", [False, True], ids=["best mask", "quick mask"])
@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("size_mm", PRINT_MM)
def test_a_printed_svg_decodes_to_exactly_the_text(kind: Kind, size_mm: int, quick: bool) -> None:
    text = text_of(kind)
    document = qrrender.svg(text, size_mm, quick=quick)
    assert f'width="{size_mm}mm"' in document
    image, pixels = rasterize_svg(document, PRINT_DPI)
    assert decode(image, pixels, pixels) == [text]
    verified(kind, decode(image, pixels, pixels))


def test_sizes_out_of_range_are_refused() -> None:
    text = text_of(Kind.PAYMENT)
    with pytest.raises(errors.InvalidInput):
        qrrender.png(text, 40)  # fewer pixels than modules
    with pytest.raises(errors.InvalidInput):
        qrrender.svg(text, 2)

"""QR codes of token texts (``points.qrtokens``): SVG for print, PNG for screens.

Both use error correction M and a quiet zone of 4 modules, and encode the text in the QR
alphanumeric mode (a token's text is uppercase for that), so every token kind fits version 10
(57 × 57 modules) at most. ``svg`` is sized in millimetres for print (one path of dark runs, no
raster); ``png`` is an 8-bit greyscale image at most ``pixels`` wide, whole pixels per module so
that a phone's scanner sees sharp edges. ``qrcode`` builds the matrix; the PNG is written here
with ``zlib`` (Pillow is not a dependency).
"""

from __future__ import annotations

import struct
import zlib

import qrcode
from qrcode.constants import ERROR_CORRECT_M

from points.errors import InvalidInput

QUIET_ZONE = 4


#: The mask of the codes shown on a screen for seconds (``quick=True``). Any of the eight masks
#: decodes; ``qrcode`` picks the one with the fewest hard-to-read patterns by building the matrix
#: eight times, which takes four fifths of a render (about 14 of 17 ms in pure Python): worth it
#: for a printed code, not for a payment QR that lives two minutes on a bright screen.
QUICK_MASK = 0


def _code(text: str, *, quick: bool = False) -> qrcode.QRCode:
    code = qrcode.QRCode(
        error_correction=ERROR_CORRECT_M, border=0, mask_pattern=QUICK_MASK if quick else None
    )
    code.add_data(text)
    code.make(fit=True)
    return code


def version(text: str) -> int:
    """The QR version ``text`` needs at error correction M."""
    return int(_code(text).version)


def matrix(text: str, *, quick: bool = False) -> list[list[bool]]:
    """The modules (True: dark), without the quiet zone; ``quick``: a fixed mask."""
    return [[bool(cell) for cell in row] for row in _code(text, quick=quick).get_matrix()]


def dark_runs(modules: list[list[bool]]) -> str:
    """SVG path data of the dark modules, one unit per module, offset by the quiet zone: one
    rectangle per horizontal run of dark modules (what ``svg`` and the printed card draw)."""
    runs: list[str] = []
    for y, row in enumerate(modules):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            width = x - start
            runs.append(f"M{start + QUIET_ZONE},{y + QUIET_ZONE}h{width}v1h-{width}z")
    return "".join(runs)


def svg(text: str, size_mm: float, *, quick: bool = False) -> str:
    """An SVG ``size_mm`` millimetres square (quiet zone included) for print; ``quick`` for a
    code shown on a screen for seconds (``QUICK_MASK``)."""
    if not 5 <= size_mm <= 500:
        raise InvalidInput("a printed QR code is 5 to 500 millimetres wide")
    modules = matrix(text, quick=quick)
    side = len(modules) + 2 * QUIET_ZONE
    size = f"{float(size_mm):g}"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" '
        f'width="{size}mm" height="{size}mm" viewBox="0 0 {side} {side}" '
        'shape-rendering="crispEdges">'
        f'<rect width="{side}" height="{side}" fill="#fff"/>'
        f'<path fill="#000" d="{dark_runs(modules)}"/></svg>'
    )


def png(text: str, pixels: int) -> bytes:
    """A PNG at most ``pixels`` wide and high (quiet zone included), whole pixels per module."""
    modules = matrix(text)
    side = len(modules) + 2 * QUIET_ZONE
    scale = pixels // side if pixels <= 4096 else 0
    if scale < 1:
        raise InvalidInput(f"a PNG of this code needs {side} to 4096 pixels")
    white = b"\xff" * (QUIET_ZONE * scale)
    rows = [b"\x00" + b"\xff" * (side * scale)] * (QUIET_ZONE * scale)
    body: list[bytes] = []
    for row in modules:
        line = b"".join((b"\x00" if dark else b"\xff") * scale for dark in row)
        body.extend([b"\x00" + white + line + white] * scale)
    raw = b"".join(rows + body + rows)
    width = side * scale

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, width, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )

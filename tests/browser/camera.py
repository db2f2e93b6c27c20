"""The fake camera: Chromium plays a one-frame .y4m file as the phone's camera.

Chromium is launched with ``--use-file-for-fake-video-capture=PATH``; ``FakeCamera.show(text)``
renders ``text`` as a QR code (``points.qrrender.png``: whole pixels per module, quiet zone of 4)
at 5 px a module, centred on a light-grey 640x480 frame, and writes it to PATH (atomically).

Verified by experiment (Chromium 156, tests/browser/test_wallet_infrastructure.py keeps it
true): Chromium reads the file again each time the capture device is *opened*, i.e. at a
``getUserMedia`` while no other track of the browser holds the camera. A track that stays live
keeps playing the old picture, and a ``getUserMedia`` made meanwhile (another page or context
included) shares it. So ``show`` must come before the app opens the camera, and the app must stop
its tracks when it leaves the scan screen (each test's context is closed at its end, which stops
whatever it left open).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from points import qrrender

WIDTH, HEIGHT = 640, 480
BACKGROUND = 200  # light grey
PIXELS_PER_MODULE = 5


def frame_of(text: str | None) -> Image.Image:
    """The camera's picture: ``text`` as a QR code centred on grey (only grey for None)."""
    frame = Image.new("L", (WIDTH, HEIGHT), BACKGROUND)
    if text is not None:
        side = len(qrrender.matrix(text)) + 2 * qrrender.QUIET_ZONE
        code = Image.open(io.BytesIO(qrrender.png(text, side * PIXELS_PER_MODULE))).convert("L")
        frame.paste(code, ((WIDTH - code.width) // 2, (HEIGHT - code.height) // 2))
    return frame


def write_y4m(path: Path, frame: Image.Image) -> None:
    """One 4:2:0 frame (Pillow only: Y full size, Cb and Cr box-filtered to half)."""
    luma, blue, red = frame.convert("RGB").convert("YCbCr").split()
    half = (frame.width // 2, frame.height // 2)
    data = b"".join(
        [
            f"YUV4MPEG2 W{frame.width} H{frame.height} F30:1 Ip A1:1 C420jpeg\n".encode(),
            b"FRAME\n",
            luma.tobytes(),
            blue.resize(half, Image.Resampling.BOX).tobytes(),
            red.resize(half, Image.Resampling.BOX).tobytes(),
        ]
    )
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


class FakeCamera:
    def __init__(self, path: Path) -> None:
        #: Absolute and normalised: Chromium refuses a path with ``..`` (NotFoundError).
        self.path = Path(os.path.abspath(path))
        self.showing: str | None = None
        self.show(None)

    def show(self, text: str | None) -> None:
        """What the camera sees from the next time a page opens it: ``text`` as a QR code
        (None: an empty grey picture)."""
        write_y4m(self.path, frame_of(text))
        self.showing = text

"""Where the web apps' static files are: ``APP_DIR`` (the resident's wallet) is served at
``/app/`` by the API, ``STAFF_DIR`` (the staff devices' app: a shop's till first) at
``/staff/``."""

from __future__ import annotations

from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "app"
STAFF_DIR = Path(__file__).resolve().parent / "staff"

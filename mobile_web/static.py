"""Where the wallet app's static files are: ``APP_DIR`` is served at ``/app/`` by the API."""

from __future__ import annotations

from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "app"

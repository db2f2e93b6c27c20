"""Helpers for the ledger export tests (and the authorization table's export row)."""

from __future__ import annotations

from typing import Any

from api_world import World

from ledger import Ledger


def sealed_world(world: World) -> dict[str, Any]:
    """Seal the world's ledger (so that sequence 1 can be exported); no path parameters."""
    Ledger(world.engine).seal()
    return {}

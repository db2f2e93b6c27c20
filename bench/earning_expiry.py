"""``python -m bench expiry``: see ``bench.earning``."""

from bench.earning import main_expiry as main

__all__ = ["main"]

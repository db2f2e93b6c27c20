"""``python -m bench award``: see ``bench.earning``."""

from bench.earning import main_award as main

__all__ = ["main"]

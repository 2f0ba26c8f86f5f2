"""Helpers shared by the tests of advrobust.run."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def count_units(store: Path) -> int:
    """Finished units committed to the run store at ``store`` (0 while it does not exist yet)."""
    try:
        with sqlite3.connect(store, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM units").fetchone()[0]
    except sqlite3.OperationalError:
        return 0

"""Persistent state: SQLAlchemy tables and the Store that opens them (SQLite in the state dir by default)."""

from moorage.store.db import Store, open_store

__all__ = ["Store", "open_store"]

"""Persistent state: SQLAlchemy tables and the Store that opens them (SQLite in the state dir by default)."""

from moorage.store.db import Store, open_store
from moorage.store.endpoints import delete_endpoint, update_endpoint

__all__ = ["Store", "delete_endpoint", "open_store", "update_endpoint"]

"""SQLite backend (the default): one file holds Bayes, state and fuzzy hashes. The parts
live in sqlite_conn.py (schema, connections), sqlite_bayes.py, sqlite_state.py and
sqlite_fuzzy.py; this class joins them into one handle over one connection per thread."""

from __future__ import annotations

from pyspamd.storage.base import Storage
from pyspamd.storage.sqlite_bayes import SqliteBayes
from pyspamd.storage.sqlite_conn import SCHEMA_VERSION, release_thread_connections
from pyspamd.storage.sqlite_fuzzy import SqliteFuzzy
from pyspamd.storage.sqlite_state import SqliteState


class SqliteStorage(SqliteBayes, SqliteState, SqliteFuzzy, Storage):
    """Bayes, state and fuzzy hashes in one SQLite file."""


__all__ = ["SCHEMA_VERSION", "SqliteStorage", "release_thread_connections"]

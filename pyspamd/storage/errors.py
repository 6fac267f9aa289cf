"""The storage errors, in a module of their own without numpy, so config validation and
the CLI can name them without loading a backend."""

from __future__ import annotations


class StorageError(Exception):
    """The store cannot be used (down, locked, corrupt, unwritable); the message says which
    store and what to do, and nothing was half-written."""


class StorageMissing(StorageError):
    """The store does not exist yet (nothing learned); scanning goes on without Bayes."""


class BatchError(StorageError):
    """A batch of learns could not be committed; none of `labels` were stored."""

    def __init__(self, message: str, labels: list[str]) -> None:
        super().__init__(message)
        self.labels = labels

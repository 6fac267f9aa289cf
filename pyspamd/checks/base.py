"""The one interface every check implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from typing import ClassVar

from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task


class Check(ABC):
    """A check reads the task and adds symbols to `hits`; scoring happens later, in one place.

    `symbols` declares every symbol the check can add, with its default score and
    description, so rule files and the config can re-score them and metas can use them.
    A check whose work waits on the network sets `is_async` and returns an awaitable from
    `run`; the scanner runs those concurrently.
    """

    name: ClassVar[str]
    symbols: ClassVar[Mapping[str, SymbolDef]] = {}
    is_async: ClassVar[bool] = False

    @abstractmethod
    def run(self, task: Task, hits: Hits) -> Awaitable[None] | None: ...

"""The one interface every check implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task


@dataclass(slots=True)
class Decision:
    """The verdict as scoring left it, for checks that run after scoring to change."""

    action: str
    score: float
    message: str = ""
    forced_by: str = ""


class Check(ABC):
    """A check reads the task and adds symbols to `hits`; scoring happens later, in one place.

    `symbols` declares every symbol the check can add, with its default score and
    description, so rule files and the config can re-score them and metas can use them.
    A check whose work waits on the network sets `is_async` and returns an awaitable from
    `run`; the scanner runs those concurrently. A check whose work depends on the verdict
    (greylisting acts only on messages the score sends to `greylist`) sets
    `runs_after_scoring`: the scanner then calls `after_scoring` instead of `run`.
    """

    name: ClassVar[str]
    symbols: ClassVar[Mapping[str, SymbolDef]] = {}
    is_async: ClassVar[bool] = False
    runs_after_scoring: ClassVar[bool] = False

    @abstractmethod
    def run(self, task: Task, hits: Hits) -> Awaitable[None] | None: ...

    def after_scoring(self, task: Task, hits: Hits, decision: Decision) -> None:
        """May add symbols (they are scored and shown) and change `decision`."""
        return None

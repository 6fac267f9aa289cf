"""The one interface every check implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

if TYPE_CHECKING:
    from pyspamd.config import Config
    from pyspamd.result import ScanResult
    from pyspamd.services import Services


@dataclass(slots=True)
class Decision:
    """The verdict as scoring left it, for checks that run after scoring to change."""

    action: str
    score: float
    message: str = ""
    forced_by: str = ""


class Check(ABC):
    """A check reads the task and adds symbols to `hits`; scoring happens later, in one place.

    `build` makes the check as the config asks for it, or returns None when the config turns
    it off; registry.py lists every check's class, and nothing else needs to know of it.
    `symbols` declares every symbol the check can add, with its default score and
    description, so rule files and the config can re-score them and metas can use them.
    A check whose work waits on the network sets `is_async` and returns an awaitable from
    `run`; the scanner runs those concurrently. A check whose work depends on the verdict
    (greylisting acts only on messages the score sends to `greylist`) sets
    `runs_after_scoring`: the scanner then calls `after_scoring` instead of `run`. A check
    that learns from the finished result (Bayes autolearn) overrides `after_scan`.
    What a check keeps about one message between these calls lives in `task.scratch`.
    """

    name: ClassVar[str]
    symbols: ClassVar[Mapping[str, SymbolDef]] = {}
    is_async: ClassVar[bool] = False
    runs_after_scoring: ClassVar[bool] = False

    @classmethod
    def build(cls, config: Config, services: Services) -> Check | None:
        """The check for this config, or None when the config turns it off."""
        return cls()

    @abstractmethod
    def run(self, task: Task, hits: Hits) -> Awaitable[None] | None: ...

    def after_scoring(self, task: Task, hits: Hits, decision: Decision) -> None:
        """May add symbols (they are scored and shown) and change `decision`."""
        return None

    def after_scan(self, task: Task, result: ScanResult) -> None:
        """Called with the finished result; a failure is logged, the verdict stands."""
        return None

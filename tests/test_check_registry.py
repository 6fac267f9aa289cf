"""The check registry names every check once, and each name resolves to a Check."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pyspamd.checks
from pyspamd.checks.base import Check
from pyspamd.checks.registry import CHECKS, check_classes

# Built by the scanner itself, ahead of the registry's checks: the rules run first, so that
# a spent scan budget never costs a rule hit such as GTUBE.
BUILT_BY_THE_SCANNER = {"RegexRules"}


def test_every_entry_is_a_check_named_once() -> None:
    classes = check_classes()
    assert len(classes) == len(CHECKS) == len(set(CHECKS))
    assert all(issubclass(cls, Check) and cls is not Check for cls in classes)


def test_every_check_in_the_package_is_registered() -> None:
    defined = set()
    for info in pkgutil.iter_modules(pyspamd.checks.__path__):
        module = importlib.import_module(f"pyspamd.checks.{info.name}")
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if (issubclass(obj, Check) and obj is not Check and not inspect.isabstract(obj)
                    and obj.__module__ == module.__name__):
                defined.add(f"{info.name}:{name}")
    unregistered = {entry for entry in defined - set(CHECKS)
                    if entry.split(":")[1] not in BUILT_BY_THE_SCANNER}
    assert unregistered == set()

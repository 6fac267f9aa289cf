"""The package's import graph (grimp reads the imports, including those inside functions
and under TYPE_CHECKING, without running them): no module imports itself through others,
and the controller uses nothing of the command line."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("pyspamd", cache_dir=None)


def test_no_import_loops(graph: grimp.ImportGraph) -> None:
    sorter = TopologicalSorter({m: graph.find_modules_directly_imported_by(m)
                                for m in graph.modules})
    try:
        sorter.prepare()
    except CycleError as exc:
        pytest.fail(f"import loop: {' -> '.join(reversed(exc.args[1]))}")


def test_controller_does_not_import_the_command_line(graph: grimp.ImportGraph) -> None:
    chain = graph.find_shortest_chain("pyspamd.controller", "pyspamd.cli", as_packages=True)
    assert chain is None, " -> ".join(chain or ())


def _settings_modules(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules
                  if m.rsplit(".", 1)[-1].endswith("settings") or m == "pyspamd.config_schema")


def test_settings_modules_do_not_reach_the_config_loader(graph: grimp.ImportGraph) -> None:
    """pyspamd.config imports every section's settings module, so none may lead back to it.
    Importing a module first runs its packages' __init__, so what those reach counts too (an
    edge grimp does not draw; pyspamd.dns's __init__ loads the resolver, and so the config)."""
    modules = _settings_modules(graph)
    assert "pyspamd.milter.settings" in modules and "pyspamd.dns_settings" in modules
    for module in modules:
        parts = module.split(".")
        starts = [module, *(".".join(parts[:n]) for n in range(2, len(parts)))]
        reached = set(starts).union(*(graph.find_upstream_modules(m) for m in starts))
        assert "pyspamd.config" not in reached, module

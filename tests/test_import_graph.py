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

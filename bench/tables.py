"""How the benchmarks print their results, so every script's table reads the same."""

from __future__ import annotations

from collections.abc import Sequence


def print_measures(rows: Sequence[tuple[str, str]]) -> None:
    """Two columns, `measure | value`, padded for a terminal."""
    width = max(len(key) for key, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|-{'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}} | {value}")


def print_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A Markdown table, ready to paste into the README."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")

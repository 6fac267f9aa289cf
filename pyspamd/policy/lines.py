"""Reading map text as Postfix does: logical lines, comments, continuation lines."""

from __future__ import annotations

from collections.abc import Iterator


def logical_lines(text: str, label: str) -> Iterator[tuple[str, str]]:
    """Yield ("LABEL:LINE", logical line). A line starting with whitespace continues the
    one before (postmap(1)); blank lines and lines whose first non-blank is `#` are
    skipped. The line number is that of the logical line's first physical line."""
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace() and current:
            current.append(stripped)
            continue
        if current:
            yield f"{label}:{start}", " ".join(current)
        current, start = [stripped], number
    if current:
        yield f"{label}:{start}", " ".join(current)


def inline_lines(values: list[str], label: str) -> Iterator[tuple[str, str]]:
    """The `values = [...]` of a map in the config: one entry per list item."""
    for index, value in enumerate(values):
        stripped = value.strip()
        if stripped and not stripped.startswith("#"):
            yield f"{label}[{index}]", stripped

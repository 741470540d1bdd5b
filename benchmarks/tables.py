"""Output of the benchmark scripts: a markdown table printed, and appended to ``--out``."""

from __future__ import annotations

from pathlib import Path


def emit(table: str, out: Path | None) -> None:
    """Print ``table``; also append it to ``out`` when given (a results file kept across runs)."""
    print(table)
    if out:
        with open(out, "a") as f:
            f.write(table + "\n")

"""Locate the committed data files under ``manifests/`` (schema, official splits)."""

from __future__ import annotations

import sys
from pathlib import Path


def manifests_dir() -> Path:
    """The ``manifests/`` directory: the source tree's, or the copy a wheel install put in
    ``<prefix>/share/avdd/manifests``."""
    candidates = [
        Path(__file__).resolve().parents[1] / "manifests",
        Path(sys.prefix) / "share" / "avdd" / "manifests",
    ]
    for c in candidates:
        if (c / "manifest.schema.json").is_file():
            return c
    raise FileNotFoundError(
        "Cannot find avdd's manifests/ directory (manifest schema and official splits); looked in "
        + ", ".join(str(c) for c in candidates)
    )

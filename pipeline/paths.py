"""Paths from manifests stay inside the corpus.

Manifests come from other people: a row's ``path`` (or ``audio_path``) could name
``../../../../etc/passwd``, an absolute path, or a symlink that leads out of the corpus. Every
such path is refused, before anything opens or probes it, with the failure reason
``outside_root``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MediaError


def inside(root, rel, allowed=()) -> Path:
    """The file ``rel`` names under the corpus ``root``.

    ``rel`` is relative to ``root``; an absolute ``rel`` is accepted only inside ``root`` or
    one of the ``allowed`` folders (e.g. an ``--audio-dir`` given to a recipe). Symlinks are
    resolved: the real file must lie inside too. Raises :class:`MediaError` ``outside_root``
    otherwise. The file itself is not opened (it need not exist).
    """
    root = Path(root)
    p = Path(rel)
    full = p if p.is_absolute() else root / p
    real = Path(os.path.realpath(full))
    for base in (root, *allowed):
        if _within(real, Path(os.path.realpath(base))):
            return full
    places = ", ".join(str(b) for b in (root, *allowed))
    raise MediaError(rel, "outside_root", f"resolves to {real}, which is not under {places}")


def _within(path: Path, base: Path) -> bool:
    return path == base or base in path.parents

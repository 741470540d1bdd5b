"""Fault injection at chosen points of a stage, for the reliability tests.

A stage calls :func:`point` at the places where a crash or a write error matters (after the
first array of a shard is written, between the data and the done-marker, ...). Nothing happens
unless the environment variable ``AVDD_FAULT`` names that point::

    AVDD_FAULT=<stage>.<point>[@<shard>]:<action>      e.g. extract.after_first_write@0:exit

Actions: ``exit`` ends the process at once (``os._exit``: no cleanup, like SIGKILL), ``enospc``
raises ``OSError(ENOSPC)`` as a full disk would. With ``AVDD_FAULT_ONCE=FILE`` the fault fires
only in the first process that gets to create ``FILE`` (so a re-run, or the task retried on
another worker, goes through). Environment variables reach Dask worker processes started after
they are set.
"""

from __future__ import annotations

import errno
import os

EXIT_CODE = 70  # status of a process ended by an injected fault


def point(stage: str, name: str, shard: int | None = None) -> None:
    """Fire the fault ``AVDD_FAULT`` describes if it names ``stage.name`` (and ``shard``)."""
    spec = os.environ.get("AVDD_FAULT")
    if not spec:
        return
    where, _, action = spec.partition(":")
    target, _, only = where.partition("@")
    if target != f"{stage}.{name}" or (only and shard is not None and int(only) != shard):
        return
    once = os.environ.get("AVDD_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if action == "exit":
        os._exit(EXIT_CODE)
    if action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {stage}.{name})")
    raise ValueError(f"AVDD_FAULT={spec!r}: unknown action {action!r} (exit, enospc)")

"""Check a store against the checksums its done-markers recorded, and repair what fails.

Every stage (extract, convert, build-shards) writes a shard's arrays and then a done-marker
that records the sha256 of each array file of that shard (``checksums``) and of the marker's
own content (``marker_sha``). :func:`verify` recomputes them for every finished shard of a
store (an extracted store or a shards store alike):

- ``ok``: data and marker are as written;
- ``mismatch``: an array file of the shard changed, vanished or appeared since the marker;
- ``broken``: the marker cannot be read, or its content no longer matches its checksum;
- ``unverifiable``: the marker was written before markers carried checksums (still valid).

It also lists stale temporary files (left by a process killed in the middle of an atomic
write). ``repair=True`` deletes the markers of mismatched and broken shards, so that the next
run of their stage redoes exactly those shards, and removes the stale temporary files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import store as st


def _is_temporary(name: str) -> bool:
    """``.zarr.json.tmp-<pid>`` (our markers), ``<key>.<uuid>.partial`` (zarr's atomic writes)."""
    return ".tmp-" in name or name.endswith(".partial")


@dataclass
class ShardCheck:
    stage: str
    output: str
    shard: int
    status: str  # ok, mismatch, broken, unverifiable
    detail: str = ""


@dataclass
class VerifyReport:
    store: str
    shards: list[ShardCheck] = field(default_factory=list)
    stale_files: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for s in self.shards if s.status == status)

    @property
    def bad(self) -> list[ShardCheck]:
        return [s for s in self.shards if s.status in ("mismatch", "broken")]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = {k: self.count(k) for k in ("ok", "mismatch", "broken", "unverifiable")}
        return d


def verify(store, repair: bool = False) -> VerifyReport:
    """Check every finished shard of ``store``; with ``repair``, invalidate the bad ones."""
    if st.is_url(store):
        raise ValueError(f"{store}: verify reads stores on a local or shared filesystem; it does not list "
                         "object storage yet (copy the store, or verify it where it is mounted)")
    store = Path(store)
    if not (store / "zarr.json").is_file():
        raise FileNotFoundError(f"Not a zarr store (no zarr.json): {store}")
    report = VerifyReport(store=str(store))
    markers = store / "_markers"
    for stage_dir in sorted(p for p in markers.iterdir() if p.is_dir()) if markers.is_dir() else []:
        for out_dir in sorted(p for p in stage_dir.rglob("*") if p.is_dir() and _is_output(p)):
            output = out_dir.relative_to(stage_dir).as_posix()
            for shard_dir in sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name.isdigit()):
                report.shards.append(check_shard(store, stage_dir.name, output, shard_dir))
    report.stale_files = [str(p.relative_to(store)) for p in stale_temporaries(store)]
    if repair:
        for s in report.bad:
            d = st.marker_path(store, s.stage, s.output, s.shard)
            shutil.rmtree(d)
            report.repaired.append(str(d.relative_to(store)))
        for rel in report.stale_files:
            (store / rel).unlink(missing_ok=True)
            report.repaired.append(rel)
    return report


def _is_output(d: Path) -> bool:
    """A marker output folder: its sub-folders are shard numbers."""
    return any(p.is_dir() and p.name.isdigit() for p in d.iterdir())


def check_shard(store: Path, stage: str, output: str, shard_dir: Path) -> ShardCheck:
    shard = int(shard_dir.name)
    check = ShardCheck(stage, output, shard, "ok")
    try:
        body = json.loads((shard_dir / "zarr.json").read_text())["attributes"]["avdd_marker"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        check.status, check.detail = "broken", f"marker unreadable ({type(e).__name__})"
        return check
    if "marker_sha" not in body or "checksums" not in body:
        check.status, check.detail = "unverifiable", "marker written without checksums"
        return check
    if st.marker_sha(body) != body["marker_sha"]:
        check.status, check.detail = "broken", "marker content does not match its checksum"
        return check
    now = st.shard_checksums(store, list(body["checksums"]), shard)
    changed = [name for name, sha in body["checksums"].items() if now[name] != sha]
    if changed:
        check.status, check.detail = "mismatch", "changed: " + ", ".join(changed)
    return check


def stale_temporaries(store: Path) -> list[Path]:
    """Temporary files of atomic writes that never completed (a process killed mid-write)."""
    return sorted(p for p in store.rglob("*") if p.is_file() and _is_temporary(p.name))


def format_report(r: VerifyReport) -> str:
    c = r.to_dict()["counts"]
    lines = [f"{r.store}: {len(r.shards)} finished shard(s): {c['ok']} ok, {c['mismatch']} mismatch, "
             f"{c['broken']} broken, {c['unverifiable']} unverifiable (markers without checksums)"]
    lines += [f"  {s.status}: {s.stage}/{s.output} shard {s.shard}: {s.detail}" for s in r.shards
              if s.status != "ok"]
    lines += [f"  stale temporary file: {f}" for f in r.stale_files]
    if r.repaired:
        lines.append(f"  repaired: {len(r.repaired)} marker(s)/file(s) removed; run the stages again to redo them")
    return "\n".join(lines)

"""The unified manifest: one JSONL row per media item, validated against a committed schema.

Files written for a manifest ``OUT.jsonl``:

- ``OUT.jsonl``           the rows (see ``manifests/manifest.schema.json``);
- ``OUT.failures.jsonl``  listed items that could not be used, each with its reason;
- ``OUT.meta.json``       recipe, absolute corpus root, options, counts, avdd version.

Row paths are relative to the corpus root, so a manifest stays valid when the corpus moves
(give the new place with ``--root``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import jsonschema

from . import __version__
from .errors import MediaError
from .resources import manifests_dir

LABELS = ("real", "fake")
SPLITS = ("train", "val", "test")


@dataclass
class ManifestRow:
    """One media item. Field meanings are documented in ``manifests/manifest.schema.json``."""

    id: str
    path: str
    media: str = "video"
    video_label: str | None = None
    audio_label: str | None = None
    method: str | None = None
    source_id: str | None = None
    group: str = ""
    identity: str | None = None
    split: str | None = None
    has_audio: bool | None = None
    audio_path: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.group:
            self.group = self.id

    def to_dict(self) -> dict:
        # fields are scalars but ``extra``, a flat dict of JSON values: one shallow copy of it is
        # what ``asdict`` gives, without its deep copy of every value (2x the cost of a manifest)
        nested = any(isinstance(v, (dict, list)) for v in self.extra.values())
        return {f: getattr(self, f) if f != "extra" else (copy.deepcopy(self.extra) if nested else dict(self.extra))
                for f in _ROW_FIELDS}

    @classmethod
    def from_dict(cls, d: dict) -> "ManifestRow":
        return cls(**d)


_ROW_FIELDS = tuple(f.name for f in fields(ManifestRow))  # in order, as asdict gives them


@dataclass
class Failure:
    """A listed item that could not be used."""

    path: str
    reason: str
    detail: str = ""
    id: str | None = None

    @classmethod
    def from_error(cls, err: MediaError, id: str | None = None, root: Path | None = None) -> "Failure":
        path = err.path
        if root is not None:
            try:
                path = Path(path).relative_to(root).as_posix()
            except ValueError:
                pass
        return cls(path=path, reason=err.reason, detail=err.detail, id=id)


@dataclass
class RecipeResult:
    rows: list[ManifestRow]
    failures: list[Failure] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((manifests_dir() / "manifest.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def validate_rows(rows: list[ManifestRow], source: str = "manifest") -> None:
    """Check every row against the schema, ids for uniqueness and groups for one split each.

    Raises ValueError listing (up to 20 of) the problems found, each naming the row.
    """
    problems: list[str] = []
    validator = _validator()
    seen: set[str] = set()
    group_split: dict[str, str | None] = {}
    for n, row in enumerate(rows, 1):
        d = row.to_dict() if isinstance(row, ManifestRow) else row
        for err in validator.iter_errors(d):
            where = "/".join(str(p) for p in err.absolute_path) or "row"
            problems.append(f"row {n} (id={d.get('id')!r}): {where}: {err.message}")
        rid, group, split = d.get("id"), d.get("group"), d.get("split")
        if rid in seen:
            problems.append(f"row {n}: duplicate id {rid!r}")
        seen.add(rid)
        if group in group_split and group_split[group] != split:
            problems.append(
                f"row {n} (id={rid!r}): group {group!r} is in split {group_split[group]!r} "
                f"and {split!r}; a group must stay in one split"
            )
        group_split.setdefault(group, split)
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"Invalid {source}:\n" + "\n".join(problems[:20]) + more)


def sidecar_paths(manifest_path) -> tuple[Path, Path]:
    """(failures path, meta path) beside a manifest ``X.jsonl``."""
    p = Path(manifest_path)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(stem + ".failures.jsonl"), p.with_name(stem + ".meta.json")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_manifest(result: RecipeResult, out, recipe: str, corpus_dir, options: dict | None = None) -> dict:
    """Validate and write a manifest with its failures and meta sidecars; returns the summary."""
    out = Path(out)
    rows = [r.to_dict() for r in result.rows]
    validate_rows(rows, source=f"manifest for {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    failures_path, meta_path = sidecar_paths(out)
    _atomic_write_text(out, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    _atomic_write_text(
        failures_path, "".join(json.dumps(asdict(f), sort_keys=True) + "\n" for f in result.failures)
    )
    summary = summarize(result)
    meta = {
        "recipe": recipe,
        "corpus_dir": str(Path(corpus_dir).resolve()),
        "options": options or {},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "avdd_version": __version__,
        "schema": "manifest.schema.json",
        # folders besides the corpus that rows may name by absolute path (an --audio-dir)
        "allowed_roots": _allowed_roots(options or {}),
        **summary,
    }
    _atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def summarize(result: RecipeResult) -> dict:
    rows = result.rows
    key = lambda r: f"video={r.video_label or 'none'},audio={r.audio_label or 'none'}"  # noqa: E731
    return {
        "items": len(rows),
        "failures": len(result.failures),
        "by_label": dict(Counter(key(r) for r in rows)),
        "by_method": dict(Counter(r.method or "none" for r in rows)),
        "by_split": dict(Counter(r.split or "none" for r in rows)),
        "failures_by_reason": dict(Counter(f.reason for f in result.failures)),
    }


def read_manifest(path, validate: bool = True) -> list[ManifestRow]:
    """Read (and by default validate) the rows of a manifest JSONL file.

    The whole file is checked before anything is returned: a ValueError lists every invalid
    line (not only the first), naming the file, the line and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Manifest not found: {path}")
    rows, problems = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text manifest ({e.reason} at byte {e.start})") from None
    for n, line in enumerate(text.split("\n"), 1):  # JSONL: "\n" only (str.splitlines also cuts at U+0085)
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: not valid JSON ({e.msg})")
            continue
        if not isinstance(d, dict):
            problems.append(f"line {n}: expected a JSON object, found {type(d).__name__}")
            continue
        errs = list(_validator().iter_errors(d)) if validate else []
        if errs:
            problems += [f"line {n}: {e.message} (id={d.get('id')!r})" for e in errs]
            continue
        try:
            rows.append(ManifestRow.from_dict(d))
        except TypeError as e:  # only without validation: unknown or missing fields
            problems.append(f"line {n}: {e}")
    if problems:
        more = f"\n... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ValueError(f"Invalid manifest {path} ({len(problems)} problem(s)):\n  "
                         + "\n  ".join(problems[:50]) + more)
    if validate:
        validate_rows(rows, source=str(path))
    return rows


def manifest_root(path, root=None) -> Path:
    """Corpus root for a manifest: ``root`` if given, else the one in its meta sidecar, else
    the manifest's own directory."""
    if root is not None:
        return Path(root).resolve()
    _, meta_path = sidecar_paths(path)
    if meta_path.is_file():
        corpus = json.loads(meta_path.read_text()).get("corpus_dir")
        if corpus:
            return Path(corpus)
    return Path(path).resolve().parent


def _allowed_roots(options: dict) -> list[str]:
    roots = list(options.get("allowed_roots", []))
    if options.get("audio_dir"):
        roots.append(str(Path(options["audio_dir"]).resolve()))
    return sorted(set(roots))


def manifest_allowed_roots(path) -> list[str]:
    """Folders outside the corpus that a manifest's rows may name (its meta's allowed_roots)."""
    _, meta_path = sidecar_paths(path)
    return json.loads(meta_path.read_text()).get("allowed_roots", []) if meta_path.is_file() else []


def read_failures(manifest_path) -> list[Failure]:
    failures_path, _ = sidecar_paths(manifest_path)
    if not failures_path.is_file():
        return []
    return [Failure(**json.loads(line)) for line in failures_path.read_text().splitlines() if line.strip()]


def merge_manifests(paths, out, prefix_ids: bool = False) -> dict:
    """Merge manifests of different corpora into one, rooted at their roots' common folder.

    Paths (and relative ``audio_path``s) are rebased onto the common root. Ids must be unique
    across the inputs; ``prefix_ids`` prefixes each id (and group) with its manifest's recipe.
    Failures are concatenated. Returns the merged manifest's meta.
    """
    paths = [Path(p) for p in paths]
    roots = [manifest_root(p) for p in paths]
    common = Path(os.path.commonpath([str(r) for r in roots]))
    rows: list[ManifestRow] = []
    failures: list[Failure] = []
    recipes = []
    for p, root in zip(paths, roots):
        _, meta_path = sidecar_paths(p)
        recipe = json.loads(meta_path.read_text()).get("recipe", p.stem) if meta_path.is_file() else p.stem
        recipes.append(recipe)
        rel = root.relative_to(common)
        for r in read_manifest(p):
            r.path = (rel / r.path).as_posix()
            if r.audio_path and not Path(r.audio_path).is_absolute():
                r.audio_path = (rel / r.audio_path).as_posix()
            if prefix_ids:
                r.id, r.group = f"{recipe}/{r.id}", f"{recipe}/{r.group}"
            rows.append(r)
        for f in read_failures(p):
            f.path = (rel / f.path).as_posix() if not Path(f.path).is_absolute() else f.path
            failures.append(f)
    dup = [k for k, n in Counter(r.id for r in rows).items() if n > 1]
    if dup:
        raise ValueError(f"Ids occur in more than one manifest (e.g. {dup[:3]}); merge with prefixed ids (--prefix-ids)")
    return write_manifest(RecipeResult(rows, failures), out, "+".join(recipes), common,
                          options={"merged": [str(p) for p in paths], "prefix_ids": prefix_ids,
                                   "allowed_roots": [a for p in paths for a in manifest_allowed_roots(p)]})

"""``avdd-data``: the command line of the data pipeline. Commands only parse options and call
the library (``pipeline.recipes``, ``pipeline.extract``, ``pipeline.inspect``)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from . import __version__


def _fail(msg: str, code: int = 2):
    click.secho(f"error: {msg}", fg="red", err=True)
    sys.exit(code)


class StorePath(click.ParamType):
    """A store: a local folder, or any fsspec URL (``s3://bucket/x.zarr``; ``file://`` is local).
    With ``exists`` a local folder must be there (a URL is checked when the store is opened)."""

    name = "store"

    def __init__(self, exists: bool = False):
        self.exists = exists

    def convert(self, value, param, ctx):
        text = str(value)
        if "://" in text and not text.startswith("file://"):
            return text
        path = text.removeprefix("file://")
        if Path(path).is_file():
            self.fail(f"{path!r} is a file, not a store folder", param, ctx)
        if self.exists and not Path(path).is_dir():
            self.fail(f"Directory {path!r} does not exist.", param, ctx)
        return path



def bad_input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the input (a file, a store, an option) is wrong, not that avdd is:
    a command ends on them with a one-line error and status 2, never a traceback."""
    from .errors import MediaError
    from .store import StoreMismatch

    return (ValueError, OSError, StoreMismatch, MediaError, KeyError, UnicodeError)


class _Commands(click.Group):
    """The command group: a bad-input error raised anywhere in a command is reported in one
    line (``AVDD_TRACEBACK=1`` shows the traceback instead)."""

    def invoke(self, ctx):
        import os

        try:
            return super().invoke(ctx)
        except bad_input_errors() as e:
            if os.environ.get("AVDD_TRACEBACK"):
                raise
            text = str(e) if not isinstance(e, KeyError) else f"missing entry {e}"
            _fail(" ".join(text.split()) if "\n" not in text.strip() else text.strip())


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="avdd-data")
def main():
    """avdd-data: build audio-visual deepfake training data (manifests -> faces + audio -> zarr)."""


# ---- manifest ------------------------------------------------------------------------------


@main.command("manifest")
@click.argument("recipe")
@click.argument("corpus_dir", type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Manifest to write (.jsonl).")
@click.option("--compression", help="ffpp: c23 (default), c40 or raw.")
@click.option("--audio-dir", type=click.Path(file_okay=False), help="ffpp: folder of <video id>.wav original audio.")
@click.option("--splits-dir", type=click.Path(file_okay=False), help="ffpp: folder with train/val/test.json.")
@click.option("--labels", type=click.Path(dir_okay=False), help="folder: CSV with path,label[,...] columns.")
@click.option("--default-label", type=click.Choice(["real", "fake"]), help="folder: label of unlabelled files.")
@click.option("--metadata", type=click.Path(dir_okay=False), help="fakeavceleb: meta_data.csv if not in the corpus.")
@click.option("--protocol", multiple=True, type=click.Path(dir_okay=False), help="asvspoof2019_la: protocol file(s).")
@click.option("--probe", is_flag=True, default=None, help="Probe every file with ffmpeg (folder always does).")
@click.option("--allow-root", "allow_roots", multiple=True, type=click.Path(file_okay=False),
              help="A folder outside CORPUS_DIR whose files the corpus may symlink to (else refused: outside_root).")
@click.option("--workers", type=int, help="Probe on a local Dask cluster of this many worker processes "
                                         "(default: threads in this process).")
@click.option("--scheduler", help="Probe on an existing Dask cluster: tcp://HOST:PORT (workers must see the corpus).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def manifest_cmd(recipe, corpus_dir, out, as_json, allow_roots, workers, scheduler, **options):
    """Index CORPUS_DIR with RECIPE into one manifest (JSONL), with failures beside it.

    Recipes: dfdc, ffpp, fakeavceleb, voxceleb, asvspoof2019_la, in_the_wild, folder.
    """
    from .cluster import Placement
    from .manifest import sidecar_paths, write_manifest
    from .recipes import prepare
    from .recipes._common import probing_on

    options["protocol"] = list(options["protocol"]) or None
    allowed = [str(Path(a).resolve()) for a in allow_roots]
    where = Placement(scheduler=scheduler, workers=workers) if (scheduler or workers) else None
    try:
        with probing_on(where):
            result = prepare(recipe, corpus_dir, **options, **({"allowed_roots": allowed} if allowed else {}))
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    given = {k: v for k, v in options.items() if v is not None} | ({"allowed_roots": allowed} if allowed else {})
    meta = write_manifest(result, out, recipe, corpus_dir, options=given)
    failures_path, meta_path = sidecar_paths(out)
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    click.echo(f"{recipe}: {meta['items']} items -> {out}")
    for key in ("by_label", "by_method", "by_split"):
        click.echo(f"  {key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in sorted(meta[key].items())))
    if result.failures:
        click.secho(f"  {len(result.failures)} listed file(s) not usable (see {failures_path}):", fg="yellow")
        for f in result.failures[:20]:
            click.echo(f"    {f.path}: {f.reason}{' - ' + f.detail if f.detail else ''}")


@main.command("merge")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Merged manifest (.jsonl).")
@click.option("--prefix-ids", is_flag=True, help="Prefix ids and groups with each manifest's recipe name.")
def merge_cmd(manifests, out, prefix_ids):
    """Merge MANIFESTS of different corpora into one (paths rebased on their common root)."""
    from .manifest import merge_manifests

    try:
        meta = merge_manifests(manifests, out, prefix_ids=prefix_ids)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    click.echo(f"merged {len(manifests)} manifests: {meta['items']} items, {meta['failures']} failures, "
               f"root {meta['corpus_dir']} -> {out}")


# ---- where stages run ----------------------------------------------------------------------


def _placement(o: dict):
    """The Placement of a stage from its command-line options."""
    from .cluster import Placement

    if o.get("cluster") and o.get("scheduler"):
        _fail("--cluster and --scheduler exclude each other: give one")
    if o.get("cluster_config") and not o.get("cluster"):
        _fail("--cluster-config needs --cluster slurm|pbs|sge|lsf")
    resources = None
    if o.get("task_resources"):
        resources = {}
        for r in o["task_resources"]:
            name, eq, value = r.partition("=")
            try:
                resources[name] = float(value) if eq and name else None
            except ValueError:
                resources[name] = None
            if resources[name] is None:
                _fail(f"--task-resources {r!r}: expected NAME=N (e.g. GPU=1)")
    config = None
    if o.get("cluster"):
        from .jobqueue import JobQueueConfig

        try:
            config = JobQueueConfig.from_yaml(o["cluster_config"]) if o.get("cluster_config") else JobQueueConfig()
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e))
    return Placement(scheduler=o.get("scheduler"), workers=o.get("workers"), threads=o.get("threads"),
                     cluster=o.get("cluster"), cluster_config=config, resources=resources)


# ---- extract -------------------------------------------------------------------------------


def _add(fn, opts: list):
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def stage_run_options(overwrite_help: str):
    """The options of how a stage runs, for every stage command: --workers, --scheduler,
    --cluster, --cluster-config, --task-resources, --threads, --overwrite (its help says what is
    replaced) and --no-progress."""
    opts = [
        click.option("--workers", type=int, help="Local Dask worker processes (default: one per core; 0: no Dask)."),
        click.option("--scheduler", help="Run on an existing Dask cluster: tcp://HOST:PORT."),
        click.option("--cluster", type=click.Choice(["slurm", "pbs", "sge", "lsf"]),
                     help="Run on batch jobs (dask-jobqueue), adapting from zero jobs to the work."),
        click.option("--cluster-config", type=click.Path(dir_okay=False, exists=True),
                     help="YAML with cores, memory, walltime, queue, account, gpus_per_job, prologue, max_jobs "
                          "(see pipeline/jobqueue.py)."),
        click.option("--task-resources", metavar="NAME=N", multiple=True,
                     help="Dask resources every task needs (default: GPU=1 when the stage runs on cuda)."),
        click.option("--threads", type=int, help="Torch/ffmpeg threads per task (default: cores / workers)."),
        click.option("--overwrite", is_flag=True, help=overwrite_help),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
    ]
    return lambda fn: _add(fn, opts)


def extract_options(fn):
    """Options shared by ``extract`` and ``run``."""
    fn = stage_run_options("Delete a store made with another config and start again.")(fn)
    opts = [
        click.option("--fps", type=float, default=25.0, show_default=True, help="Frame grid."),
        click.option("--frames-per-clip", type=int, default=32, show_default=True,
                     help="Clip length in grid frames (32 at 25 fps: 1.28 s)."),
        click.option("--clip-seconds", type=float,
                     help="Clip length in seconds instead of frames (e.g. 4 for an audio corpus): "
                          "frames-per-clip = round(seconds x fps)."),
        click.option("--clips-per-video", type=int, default=4, show_default=True, help="At most this many clips per video."),
        click.option("--clips-per-audio", type=int, default=64, show_default=True,
                     help="An audio-only item gives every clip on the hop grid, up to this many (spread evenly)."),
        click.option("--audio-only", is_flag=True,
                     help="Take every item as audio only (no frames decoded, no face searched): a corpus "
                          "for the audio detector."),
        click.option("--audio-hop", type=float,
                     help="Seconds between the starts of an audio-only item's clips (default: the clip length; "
                          "shorter hops overlap)."),
        click.option("--items-per-shard", type=int,
                     help="Items per task/shard (default: 4 when the manifest holds videos, 64 for audio only; "
                          "an existing store keeps its own)."),
        click.option("--face-size", type=int, default=128, show_default=True, help="Face crop side (px)."),
        click.option("--mouth-size", type=int, default=96, show_default=True, help="Mouth crop side (px)."),
        click.option("--detect-every", type=int, default=16, show_default=True, help="Coarse face search on every k-th frame."),
        click.option("--refine-every", type=int, default=2, show_default=True, help="Local face fit on every k-th frame."),
        click.option("--detect-short-side", type=int, default=360, show_default=True, help="Detection resolution."),
        click.option("--device", default="cpu", show_default=True, help="MTCNN device: cpu or cuda[:N]."),
    ]
    return _add(fn, opts)


def _extract_config(o: dict):
    from .extract import ExtractConfig
    from .faces import FaceConfig

    face = FaceConfig(face_size=o["face_size"], mouth_size=o["mouth_size"], detect_every=o["detect_every"],
                      refine_every=o["refine_every"], detect_short_side=o["detect_short_side"], device=o["device"])
    frames = o["frames_per_clip"]
    if o.get("clip_seconds") is not None:
        frames = int(round(o["clip_seconds"] * o["fps"]))
        if frames < 1:
            raise click.BadParameter(f"{o['clip_seconds']} s is less than one frame at {o['fps']} fps",
                                     param_hint="--clip-seconds")
    hop = 0
    if o.get("audio_hop") is not None:
        hop = int(round(o["audio_hop"] * o["fps"]))
        if hop < 1:
            raise click.BadParameter(f"{o['audio_hop']} s is less than one frame at {o['fps']} fps",
                                     param_hint="--audio-hop")
    return ExtractConfig(fps=o["fps"], frames_per_clip=frames, clips_per_video=o["clips_per_video"],
                         clips_per_audio=o["clips_per_audio"], audio_hop_frames=hop, audio_only=o["audio_only"],
                         items_per_shard=o["items_per_shard"], face=face)


def _items_per_shard(manifest, store) -> int:
    """The default shard size: what an existing store was made with; else 4 items when the
    manifest holds videos (16 clips of face crops, ~25 MB a shard) and 64 for audio only (whose
    samples are small, so that the per-shard cost of writing and marking is spread thinly)."""
    from . import store as st
    from .manifest import read_manifest

    if st.exists(store):
        plan = st.store_attrs(store).get("stages", {}).get("extract")
        if plan is not None:
            return int(plan["config"]["items_per_shard"])
    rows = read_manifest(manifest)  # validated as extract does: the same error, listing every bad line
    return 4 if any(r.media == "video" for r in rows) else 64


def _run_extract(manifest, store, root, o: dict, as_json: bool) -> None:
    from .extract import extract
    from .store import StoreMismatch

    try:
        if o["items_per_shard"] is None:
            o = {**o, "items_per_shard": _items_per_shard(manifest, store)}
        summary = extract(manifest, store, root=root, config=_extract_config(o), where=_placement(o),
                          overwrite=o["overwrite"], progress=not o["no_progress"])
    except (StoreMismatch, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        c = summary.counts
        click.echo(f"extract: {summary.computed} shard(s) done now, {summary.skipped} already done, "
                   f"{len(summary.errors)} with errors ({summary.seconds:.1f} s)")
        click.echo(f"  samples {c.get('samples', 0)} (ok {c.get('ok', 0)}, partial {c.get('partial', 0)}), "
                   f"failed {c.get('failed', 0)}, frames {c.get('frames', 0)}")
        if summary.failures_by_reason:
            click.echo("  failures by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.failures_by_reason.items())))
    if summary.errors:
        for shard, err in sorted(summary.errors.items()):
            click.secho(f"  shard {shard} not written: {err.strip().splitlines()[-1]}", fg="red", err=True)
        click.secho("Run the same command again to retry the failed shards.", fg="red", err=True)
        sys.exit(1)


@main.command("extract")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--store", required=True, type=StorePath(), help="zarr store to write (STORE.zarr or s3://...).")
@click.option("--root", type=click.Path(file_okay=False), help="Corpus root (default: from the manifest's meta).")
@extract_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def extract_cmd(manifest, store, root, as_json, **o):
    """Extract face crops, mouth crops and clip-aligned 16 kHz audio of every MANIFEST item."""
    _run_extract(manifest, store, root, o, as_json)


# ---- convert -------------------------------------------------------------------------------


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _checkpoints(values: tuple[str, ...], vocoder: str) -> dict[str, str]:
    """``--checkpoint PATH`` (for the one vocoder) or ``--checkpoint NAME=PATH`` (repeatable)."""
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if sep and not Path(v).exists():
            out[name] = path
        elif vocoder == "all":
            _fail(f"--checkpoint {v!r}: with --vocoder all, give checkpoints as NAME=PATH")
        else:
            out[vocoder] = v
    return out


def _vocoder_options(options: tuple[str, ...], names: list[str], several: bool) -> dict[str, dict]:
    """--option KEY=VALUE (one vocoder) or NAME.KEY=VALUE (any) -> {vocoder: {key: value}}."""
    out: dict[str, dict] = {n: {} for n in names}
    for x in options:
        key, eq, value = x.partition("=")
        if not eq or not key:
            _fail(f"--option {x!r}: expected KEY=VALUE")
        name, dot, k = key.partition(".")
        if not dot:
            if several:
                _fail(f"--option {x!r}: with --vocoder all, give options as NAME.KEY=VALUE (e.g. griffinlim.n_iter=64)")
            name, k = names[0], key
        if name not in out:
            _fail(f"--option {x!r}: {name!r} is not converted by this command (vocoders: {', '.join(names)})")
        out[name][k] = _parse_value(value)
    return out


def _run_convert(store, vocoders: list[str], checkpoints: dict, o: dict, as_json: bool) -> None:
    from .convert import ConvertConfig, convert
    from .store import StoreMismatch
    from .vocoders import get_vocoder_class
    from .vocoders.checkpoint import CheckpointError

    failed = False
    for name in vocoders:
        # --half with --vocoder all: the neural vocoders only (the others have no float16 path)
        half = o.get("half", False) and (len(vocoders) == 1 or get_vocoder_class(name).needs_checkpoint)
        cfg = ConvertConfig(vocoder=name, checkpoint=checkpoints.get(name), device=o["device"],
                            batch_size=o["batch_size"], trust_pickle=o["trust_pickle"], half=half,
                            options=dict(o["options"].get(name, {})))
        try:
            summary = convert(store, cfg, where=_placement(o), overwrite=o["overwrite"],
                              progress=not o["no_progress"])
        except (StoreMismatch, CheckpointError, ValueError, FileNotFoundError, TypeError) as e:
            _fail(f"{name}: {e}")
        if as_json:
            click.echo(json.dumps(summary.to_dict(), indent=2))
        else:
            c, q = summary.counts, summary.quality
            fig = ", ".join(f"{k} {v['mean']:.3f}" for k, v in q.items() if v["mean"] is not None)
            click.echo(f"convert {name}: {summary.computed} shard(s) now, {summary.skipped} already done; "
                       f"{c.get('samples', 0)} clips ({c.get('audio_seconds', 0):.1f} s), failed {c.get('failed', 0)}"
                       f"; {fig or 'no quality figures'} ({summary.seconds:.1f} s)")
            if summary.not_extracted:
                click.echo(f"  {summary.not_extracted} shard(s) not extracted yet: run extract, then convert again")
        for shard, err in sorted(summary.errors.items()):
            failed = True
            click.secho(f"  {name}: shard {shard} not written: {err.strip().splitlines()[-1]}", fg="red", err=True)
    if failed:
        click.secho("Run the same command again to retry the failed shards.", fg="red", err=True)
        sys.exit(1)


def convert_options(fn):
    opts = [
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N]."),
        click.option("--batch-size", type=int, default=16, show_default=True, help="Clips converted together."),
        click.option("--trust-pickle", is_flag=True,
                     help="Allow a legacy pickled checkpoint (read with a restricted unpickler)."),
    ]
    fn = stage_run_options("Replace a conversion made with another checkpoint/config.")(fn)
    return _add(fn, opts)


@main.command("convert")
@click.option("--store", required=True, type=StorePath(exists=True))
@click.option("--vocoder", required=True, help="griffinlim, world, melgan, waveglow, wavernn, parallel_wavegan, "
                                              "wavenet, or all (every vocoder usable: the first two and those given a checkpoint).")
@click.option("--checkpoint", multiple=True, help="Checkpoint file (PATH, or NAME=PATH with --vocoder all).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Vocoder option, e.g. n_iter=64 (griffinlim) or f0_method=dio (world); "
                   "NAME.KEY=VALUE with --vocoder all (griffinlim.n_iter=64).")
@convert_options
@click.option("--half", is_flag=True,
              help="Neural vocoders in float16 (CUDA only): faster, but float16 rounding adds a noise floor "
                   "(~66 dB below the signal) that float32 conversions lack, a cue a detector may learn.")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
def convert_cmd(store, vocoder, checkpoint, options, as_json, **o):
    """Re-synthesise the store's real audio with a vocoder into audio/fake/NAME."""
    from .convert import usable_vocoders

    checkpoints = _checkpoints(checkpoint, vocoder)
    try:
        names = usable_vocoders(checkpoints) if vocoder == "all" else [vocoder]
    except ValueError as e:
        _fail(str(e))
    o["options"] = _vocoder_options(options, names, vocoder == "all")
    _run_convert(store, names, checkpoints, o, as_json)


@main.command("resave-checkpoint")
@click.argument("vocoder")
@click.argument("src", type=click.Path(dir_okay=False, exists=True))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--trust-pickle", is_flag=True, help="SRC is a legacy pickled module you trust.")
def resave_cmd(vocoder, src, dst, trust_pickle):
    """Re-save a VOCODER checkpoint SRC (any supported layout, e.g. NVIDIA's pickled WaveGlow)
    as DST: a plain weights file that loads with weights_only=True, with its config."""
    from .vocoders import get_vocoder_class
    from .vocoders.checkpoint import CheckpointError, file_hash

    try:
        cls = get_vocoder_class(vocoder)
        if not cls.needs_checkpoint:
            _fail(f"{vocoder} has no checkpoint")
        voc = cls.from_checkpoint(src, trust_pickle=trust_pickle)
    except (CheckpointError, ValueError) as e:
        _fail(str(e))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    voc.save(dst)
    click.echo(f"{vocoder}: {src} ({voc.checkpoint_hash}) -> {dst} ({file_hash(dst)}), loads with weights_only=True")


# ---- train-vocoder --------------------------------------------------------------------------


@main.command("train-vocoder")
@click.option("--vocoder", required=True, help="melgan, parallel_wavegan, waveglow, wavernn or wavenet.")
@click.option("--store", type=click.Path(file_okay=False, exists=True), help="Train on an extracted store's real audio.")
@click.option("--audio-dir", type=click.Path(file_okay=False, exists=True), help="Train on the audio/video files of a folder.")
@click.option("--manifest", type=click.Path(dir_okay=False, exists=True), help="Train on a manifest's real audio.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--preset", type=click.Choice(["tiny", "base"]), default="tiny", show_default=True,
              help="tiny: minutes on a CPU; base: the public release's sizes and steps.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="YAML with 'model' and/or 'train' sections overriding the preset.")
@click.option("--max-steps", type=int, help="Training steps (with --resume: the new end).")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last state left it.")
@click.option("--init", type=click.Path(exists=True), help="Fine-tune from this checkpoint (any supported layout).")
@click.option("--trust-pickle", is_flag=True, help="--init is a legacy pickled checkpoint you trust.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--batch-size", type=int, help="Segments per step (default: the preset's).")
@click.option("--seed", type=int, help="Seed of the data order, initialisation and noise (default: 0).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train_vocoder_cmd(vocoder, out, no_progress, **o):
    """Train a neural VOCODER on real speech; checkpoints in --out load with convert --checkpoint."""
    from .vocoders.checkpoint import CheckpointError
    from .vocoders.training import train

    try:
        summary = train(vocoder, out, progress=not no_progress, **o)
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as e:
        _fail(str(e))
    b, u = summary["best"], summary["untrained"]
    line = f"train-vocoder {vocoder}: {summary['steps']} steps in {summary['seconds'] / 60:.1f} min"
    if u:
        line += f"; untrained MCD {u['mcd']:.2f} LSD {u['lsd']:.2f} env {u['env_corr']:.3f}"
    click.echo(line + f"; best step {b['step']}: MCD {b['mcd']:.2f} LSD {b['lsd']:.2f} env {b['env_corr']:.3f}"
               f" -> {Path(out) / 'best.pt'}")


# ---- build-shards --------------------------------------------------------------------------


def shard_options(fn, with_vocoders: bool = True):
    opts = [
        click.option("--pairs", default="own,vocoded", show_default=True,
                     help="Pair types: own, vocoded, shifted, swapped (comma-separated)."),
        *([click.option("--vocoders", help="Converted audio to use (default: every vocoder the store was "
                                           "converted with).")] if with_vocoders else []),
        click.option("--vocoder-mode", type=click.Choice(["each", "random"]), default="each", show_default=True,
                     help="One sample per vocoder, or one random vocoder per clip."),
        click.option("--holdout-category", help="Move every sample of this method or vocoder to the 'holdout' split."),
        click.option("--balance", type=click.Choice(["none", "label", "category"]), default="none", show_default=True),
        click.option("--splits", "split_ratios", default="train=0.8,val=0.1,test=0.1", show_default=True,
                     help="Ratios for items without a dataset split."),
        click.option("--no-keep-splits", is_flag=True, help="Ignore the splits datasets give; assign all by ratio."),
        click.option("--unpaired", is_flag=True, help="Ablation: permute audio across the samples of each split."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--cache-mel/--no-cache-mel", default=False, show_default=True,
                     help="Also store the log-mel of every audio track (the models compute it from the audio)."),
        click.option("--keep-unlabelled", is_flag=True, help="Keep samples of unknown labels (-1), for inference."),
    ]
    return _add(fn, opts)


def _shards_config(o: dict):
    from .pairs import PairConfig
    from .shards import ShardsConfig
    from .splits import parse_ratios

    pairs = PairConfig(pairs=tuple(p.strip() for p in o["pairs"].split(",") if p.strip()),
                       vocoders=tuple(v.strip() for v in o["vocoders"].split(",")) if o.get("vocoders") else None,
                       vocoder_mode=o["vocoder_mode"], holdout_category=o["holdout_category"], balance=o["balance"],
                       unpaired=o["unpaired"], seed=o["seed"], keep_unlabelled=o.get("keep_unlabelled", False))
    return ShardsConfig(pairs=pairs, split_ratios=parse_ratios(o["split_ratios"]),
                        keep_given_splits=not o["no_keep_splits"], split_seed=o["seed"],
                        cache_mel=o["cache_mel"])


def _run_build(store, out, o: dict, as_json: bool) -> None:
    from .shards import build_shards, format_summary
    from .store import StoreMismatch

    try:
        result = build_shards(store, out, _shards_config(o), where=_placement(o), overwrite=o["overwrite"],
                              progress=not o["no_progress"])
    except (StoreMismatch, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"build-shards: {result['samples']} samples ({result['clips']} video clips, {result['audio']} "
                   f"audio tracks) -> {out}; {result['computed']} block(s) now, {result['skipped']} already done")
        click.echo(format_summary(result["summary"]))
        for c in result["plan"]["split_report"]["conflicts"][:10]:
            click.secho(f"  split conflict: {c['component']} given {c['given']}, kept in {c['chosen']}", fg="yellow")
    if result["errors"]:
        for b, err in sorted(result["errors"].items()):
            click.secho(f"  block {b} not written: {err.strip().splitlines()[-1]}", fg="red", err=True)
        sys.exit(1)


@main.command("build-shards")
@click.option("--store", required=True, type=StorePath(exists=True))
@click.option("--out", required=True, type=StorePath(), help="Shards to write (SHARDS.zarr or s3://...).")
@shard_options
@stage_run_options("Rebuild shards made from another store state or config.")
@click.option("--json", "as_json", is_flag=True)
def build_shards_cmd(store, out, as_json, **o):
    """Training-ready samples from an extracted (and converted) STORE: pairs, labels, leak-free
    splits, into SHARDS for the detector's reader (detector/data.py)."""
    _run_build(store, out, o, as_json)


# ---- inspect -------------------------------------------------------------------------------


@main.command("inspect")
@click.option("--store", required=True, type=StorePath(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.option("--png", type=click.Path(dir_okay=False), help="Write a contact sheet of face and mouth crops.")
@click.option("--rows", type=int, default=12, show_default=True, help="Samples on the contact sheet.")
def inspect_cmd(store, as_json, png, rows):
    """Counts (per label, method, split), failures by reason, and a contact sheet."""
    from .inspect import contact_sheet, format_report, inspect_store

    try:
        info = inspect_store(store)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    click.echo(json.dumps(info, indent=2) if as_json else format_report(info))
    if png:
        n = contact_sheet(store, png, max_rows=rows)
        click.echo(f"contact sheet: {n} samples -> {png}", err=as_json)


@main.command("verify")
@click.option("--store", required=True, type=click.Path(file_okay=False, exists=True),
              help="An extracted store (STORE.zarr) or training shards (SHARDS.zarr).")
@click.option("--repair", is_flag=True, help="Invalidate mismatched/broken shards (the next run redoes them) "
                                             "and remove stale temporary files.")
@click.option("--json", "as_json", is_flag=True)
def verify_cmd(store, repair, as_json):
    """Check every finished shard against the checksums in its done-marker (every stage).
    Exit status 1 when something does not match (and was not repaired)."""
    from .verify import format_report, verify

    report = verify(store, repair=repair)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    if report.bad and not repair:
        sys.exit(1)


# ---- run -----------------------------------------------------------------------------------


@main.command("run")
@click.argument("corpus_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--store", required=True, type=StorePath(), help="zarr store to write (STORE.zarr or s3://...).")
@click.option("--labels", type=click.Path(dir_okay=False), help="CSV with path,label[,...] columns.")
@click.option("--default-label", type=click.Choice(["real", "fake", "none"]), default="real", show_default=True,
              help="Label of files that are not under real/ or fake/ and not in --labels.")
@click.option("--vocoders", default="griffinlim,world", show_default=True,
              help="Vocoders to convert the real audio with after extraction (comma-separated; '' for none).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Clips converted together.")
@click.option("--shards", type=click.Path(file_okay=False), help="Training shards (default: STORE.shards.zarr beside the store).")
@functools.partial(shard_options, with_vocoders=False)
@extract_options
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
def run_cmd(corpus_dir, store, labels, default_label, vocoders, batch_size, shards, as_json, **o):
    """The main job: index CORPUS_DIR (folder recipe), extract into STORE, convert the real
    audio with --vocoders, build training shards.

    The manifest is written beside the store as STORE.manifest.jsonl, the shards as
    STORE.shards.zarr (or --shards).
    """
    from .manifest import write_manifest
    from .recipes import prepare

    store_path = Path(store)
    manifest = store_path.with_name(store_path.name.removesuffix(".zarr") + ".manifest.jsonl")
    try:
        result = prepare("folder", corpus_dir, labels=labels,
                         default_label=None if default_label == "none" else default_label)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    meta = write_manifest(result, manifest, "folder", corpus_dir, options={"default_label": default_label})
    click.echo(f"manifest: {meta['items']} items, {meta['failures']} not usable -> {manifest}", err=as_json)
    _run_extract(manifest, store, None, o, as_json)
    names = [v.strip() for v in vocoders.split(",") if v.strip()]
    _run_convert(store, names, {}, {**o, "batch_size": batch_size, "trust_pickle": False, "options": {}}, as_json)
    store_path = Path(store)
    shards = shards or store_path.with_name(store_path.name.removesuffix(".zarr") + ".shards.zarr")
    _run_build(store, shards, o, as_json)


if __name__ == "__main__":  # python -m pipeline.cli ... (how the detector's tools call the pipeline)
    main()

"""``avdd-train``: train a detector on shards. Only parses options and calls detector.train."""

from __future__ import annotations

import json
import sys

import click

from .builder import MODELS, all_modes


def prepare_options(workers_default):
    """Where raw media are prepared (``avdd-eval --manifest``, ``avdd-detect``): the pipeline's
    placements (local workers, a running Dask cluster, batch jobs)."""
    opts = [
        click.option("--workers", type=int, default=workers_default, show_default=workers_default is not None,
                     help="Local Dask worker processes preparing the media (0: in this process; default of "
                          "avdd-eval: one per core)."),
        click.option("--scheduler", help="Prepare on a running Dask cluster: tcp://HOST:PORT."),
        click.option("--cluster", type=click.Choice(["slurm", "pbs", "sge", "lsf"]),
                     help="Prepare on batch jobs (dask-jobqueue)."),
        click.option("--cluster-config", type=click.Path(dir_okay=False, exists=True),
                     help="YAML settings of --cluster (see pipeline/jobqueue.py)."),
    ]

    def add(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return add


def _fail(msg: str, code: int = 2):
    click.secho(f"error: {msg}", fg="red", err=True)
    sys.exit(code)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--shards", required=True, type=click.Path(file_okay=False, exists=True), help="SHARDS.zarr.")
@click.option("--model", type=click.Choice(list(MODELS)), default="av", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              help="JSON or YAML config (any subset of the fields; the rest from --preset).")
@click.option("--preset", type=click.Choice(["tiny", "base"]), help="Defaults to lay the config over (default base).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--epochs", type=int, help="Override train.epochs.")
@click.option("--max-steps", type=int, help="Override train.max_steps.")
@click.option("--batch-size", type=int, help="Override train.batch_size.")
@click.option("--num-workers", type=int, help="Override train.num_workers (DataLoader processes).")
@click.option("--no-progress", is_flag=True)
def train_main(shards, model, out, config_path, preset, resume, device, epochs, max_steps, batch_size, num_workers,
               no_progress):
    """Train a detector (av: the {2+1}-stream network; av-noatt; video; audio) on SHARDS.

    Prints the result as JSON (under torchrun, rank 0 alone): best validation score and epoch,
    steps, why it stopped, and the checkpoints; best_checkpoint is null when the run stopped
    (--max-steps) before its first validation.

    Multi-GPU: torchrun --nproc_per_node N $(which avdd-train) --shards ... (DDP)."""
    from . import config as C
    from .train import is_main_process, train

    try:
        cfg = C.load(config_path, preset=preset, model=model)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    overrides = {k: v for k, v in (("epochs", epochs), ("max_steps", max_steps), ("batch_size", batch_size),
                                   ("num_workers", num_workers)) if v is not None}
    try:
        result = train(shards, out, cfg, resume=resume, device=device, progress=not no_progress, overrides=overrides)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        _fail(str(e))
    if is_main_process():  # under torchrun, rank 0 reports for all
        click.echo(json.dumps(result, indent=2))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--shards", type=click.Path(file_okay=False, exists=True), help="Evaluate on these shards.")
@click.option("--manifest", type=click.Path(dir_okay=False, exists=True),
              help="Or on any manifest (e.g. In-the-Wild, ASVspoof2019 LA): extracted with avdd-data first.")
@click.option("--root", type=click.Path(file_okay=False), help="Corpus root of --manifest (default: its meta).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report directory.")
@click.option("--split", "splits", default="test", show_default=True, help="Split(s) to evaluate, comma-separated.")
@click.option("--mode", type=click.Choice([m.replace("_", "-") for m in all_modes()] + ["both"]), default="both",
              show_default=True, help="Inference mode to evaluate (both: every mode of the model).")
@click.option("--robustness", is_flag=True, help="Re-evaluate with noise, JPEG and video compression (p = 0.5).")
@click.option("--holdout-category", help="Evaluate the shards' holdout split (this category) as unseen.")
@click.option("--visualize", type=int, default=0, help="Write visualizations of N samples.")
@click.option("--clips-per-item", type=int, default=4, show_default=True, help="With --manifest: clips per video (an audio file gives every clip).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the robustness corruptions.")
@prepare_options(workers_default=None)
def eval_main(checkpoint, shards, manifest, root, out, splits, mode, robustness, holdout_category, visualize,
              clips_per_item, device, batch_size, seed, workers, scheduler, cluster, cluster_config):
    """Evaluate a detector checkpoint: metrics overall, per modality, category and split, both
    inference modes, robustness, unseen categories, a shortcut audit; metrics.json, report.md, PNGs."""
    from pathlib import Path

    from pipeline.prepare import PrepareConfig, PrepareError, prepare_manifest

    from .checkpoint import clip_grid, load_checkpoint
    from .evaluate import eval_dataset, evaluate_shards
    from .report import write_report

    if bool(shards) == bool(manifest):
        _fail("give exactly one of --shards and --manifest")
    try:
        model, cfg = load_checkpoint(checkpoint, device)
        excluded = []
        if manifest:
            prep = PrepareConfig(clips_per_item, **clip_grid(model), workers=workers, scheduler=scheduler, cluster=cluster,
                                 cluster_config=cluster_config)
            prepared = prepare_manifest(manifest, Path(out) / "_data", root, prep)
            shards, excluded = prepared.shards, prepared.excluded()
        modes = None if mode == "both" else (mode.replace("-", "_"),)
        result = evaluate_shards(model, cfg, shards, splits=tuple(splits.split(",")), modes=modes,
                                 robustness=robustness, holdout=holdout_category, seed=seed, device=device,
                                 batch_size=batch_size)
    except (ValueError, FileNotFoundError, PrepareError) as e:
        _fail(str(e))
    result["source"] = {"checkpoint": str(checkpoint), "data": str(manifest or shards),
                        "holdout_category": holdout_category}
    if manifest:  # the manifest's items that are not in the metrics, each with its reason
        result["source"]["not_evaluated"] = excluded
        if excluded:
            click.echo(f"{len(excluded)} item(s) of {manifest} could not be extracted and are not evaluated "
                       "(listed in metrics.json and report.md)", err=True)
    visuals = []
    if visualize:
        from .visualize import visualize as draw

        ds = eval_dataset(shards, cfg, splits.split(","), require=type(model).modalities)
        visuals = draw(model, ds, Path(out).resolve() / "visualizations", visualize, seed=seed)
    files = write_report(result, Path(out).resolve(), title=f"Evaluation of {Path(checkpoint).name}", visuals=visuals)
    files += visuals
    click.echo("\n".join(str(f) for f in files))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("paths", nargs=-1, required=True)
@click.option("--checkpoint", envvar="AVDD_CHECKPOINT", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Detector checkpoint (or $AVDD_CHECKPOINT).")
@click.option("--mode", type=click.Choice([m.replace("_", "-") for m in all_modes()]),
              help="Score to decide on (default: sync for av models, the head for the others).")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON (see detector/inference.py).")
@click.option("--clips", type=int, default=4, show_default=True, help="Clips scored per video (at most); an audio file is scored from all of its clips.")
@click.option("--threshold", type=float, default=0.5, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@prepare_options(workers_default=0)
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Where the files' store and shards go (default: a temporary folder; give a shared one "
                   "with --scheduler or --cluster).")
def detect_main(paths, checkpoint, mode, as_json, clips, threshold, device, workers, scheduler, cluster,
                cluster_config, work_dir):
    """Score raw video or audio files (or folders of them): P(video fake), P(audio fake),
    P(sequence fake) per file, from its clips."""
    from pipeline.prepare import PrepareError

    from .inference import detect

    try:
        result = detect(paths, checkpoint, mode=mode.replace("-", "_") if mode else None, device=device,
                        clips_per_file=clips, threshold=threshold, workers=workers, scheduler=scheduler,
                        cluster=cluster, cluster_config=cluster_config, work_dir=work_dir)
    except (ValueError, FileNotFoundError, PrepareError) as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        f = lambda x: "   -  " if x is None else f"{x:6.3f}"  # noqa: E731
        click.echo(f"model {result['model']}, mode {result['mode']}, threshold {result['threshold']}")
        click.echo(f"{'verdict':<8} {'score':>6} {'video':>6} {'audio':>6} {'seq':>6}  file")
        for r in result["files"]:
            if r["error"]:
                click.echo(f"{'error':<8} {'':>6} {'':>6} {'':>6} {'':>6}  {r['path']}: {r['error']}")
                continue
            click.echo(f"{r['verdict'] or '-':<8} {f(r['score'])} {f(r['p_video_fake'])} {f(r['p_audio_fake'])} "
                       f"{f(r['p_sequence_fake'])}  {r['path']}" + (f"  ({'; '.join(r['notes'])})" if r["notes"] else ""))
    if any(r["error"] for r in result["files"]):
        sys.exit(1)


if __name__ == "__main__":  # python -m detector.cli ..., e.g. under torchrun
    train_main()

"""``avdd-train``: train a detector on shards. Only parses options and calls detector.train."""

from __future__ import annotations

import json
import sys

import click


def _fail(msg: str, code: int = 2):
    click.secho(f"error: {msg}", fg="red", err=True)
    sys.exit(code)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--shards", required=True, type=click.Path(file_okay=False, exists=True), help="SHARDS.zarr.")
@click.option("--model", type=click.Choice(["av", "av-noatt", "video", "audio"]), default="av", show_default=True)
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

    Multi-GPU: torchrun --nproc_per_node N $(which avdd-train) --shards ... (DDP)."""
    from . import config as C
    from .train import train

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
    click.echo(json.dumps(result, indent=2))

"""Leave-one-vocoder-out (LOVO) generalization of audio detectors, with held-out speakers.

From an extracted and converted store (``avdd-data extract`` + ``avdd-data convert``), builds
shards (own and vocoded pairs, the manifest's splits; for training balanced by label), then for every vocoder V, model
and seed trains on the ``train`` split without V's conversions (``exclude_vocoders``; V is not in
validation either) and tests on the ``test`` split: the real clips of the test speakers against
V's conversions of the same clips (unseen synthesis, unseen speakers), at clip level and file
level (clip scores averaged per file). "seen" is the same test speakers' real clips against the
other vocoders' conversions (the in-distribution figure). Runs and their results are kept in
``--work``; a rerun skips what is done.

    python benchmarks/lovo.py --store S.zarr --work RUNS --models logmel,lfcc,lfcc-lr,lfcc-gmm \
        --seeds 0,1,2 --preset tiny [--config extra.yaml] [--vocoders a,b] --table OUT.md

Models: ``logmel``, ``lfcc``, ``linear``, ``sinc`` (the audio model with that front-end), or any
registered model name (``lfcc-lr``, ``lfcc-gmm``, ``audio``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

FRONTENDS = ("logmel", "lfcc", "linear", "sinc")
NONE = "none"  # the "left out" of a run trained on every vocoder (scored on --extra-test only)


def build(store: Path, work: Path) -> tuple[Path, Path]:
    """Two shards stores of the same splits: ``train.zarr`` balanced by label (as many vocoded as
    real clips per split, the vocoders drawn at random: a LOVO fold then trains on about 6/7 of
    them) and ``test.zarr`` with every vocoder's conversion of every clip."""
    from pipeline.pairs import PairConfig
    from pipeline.shards import ShardsConfig, build_shards

    built = []
    for name, balance in (("train.zarr", "label"), ("test.zarr", "none")):
        out = work / name
        if not out.exists():
            build_shards(store, out, ShardsConfig(pairs=PairConfig(pairs=("own", "vocoded"), balance=balance)),
                         workers=0, progress=False)
        built.append(out)
    return built[0], built[1]


def config_for(model: str, preset: str, extra: Path | None, seed: int, left_out: str):
    from detector import config as C

    name = "audio" if model in FRONTENDS else model
    cfg = C.load(extra, preset=preset, model=name)
    if model in FRONTENDS:
        cfg.model.audio.frontend = model
    cfg.train.seed, cfg.train.exclude_vocoders = seed, () if left_out == NONE else (left_out,)
    return cfg


def _summary(s: np.ndarray, y: np.ndarray) -> dict:
    from detector import metrics as M

    return {"auc": M.auc(s, y), "eer": M.eer(s, y), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}


def _scores(checkpoint: str, shards: Path):
    """The ``test`` samples of ``shards`` with audio, and the checkpoint's P(audio fake) and labels."""
    from detector.checkpoint import load_checkpoint
    from detector.evaluate import eval_dataset
    from detector.scoring import score

    model, cfg = load_checkpoint(checkpoint)
    ds = eval_dataset(shards, cfg, "test", require=("audio",))
    r = score(model, ds, "cpu", batch_size=16)
    return ds, r["p_audio"], r["audio_fake"]


def _strings(ds, key: str) -> np.ndarray:
    return np.array(ds.strings(key).tolist(), dtype=object)


def evaluate(checkpoint: str, shards: Path, left_out: str) -> dict:
    from detector.evaluate import file_level

    ds, s, y = _scores(checkpoint, shards)
    voc, ids = _strings(ds, "vocoder"), _strings(ds, "id")
    files = np.array([f"{i}|{v}" for i, v in zip(ids.tolist(), voc.tolist())], dtype=object)  # a clip's file version
    real = voc == ""
    out = {}
    for name, fake in (("unseen", voc == left_out), ("seen", ~real & (voc != left_out))):
        m = real | fake
        out[name] = _summary(s[m], y[m])
        out[name + "_file"] = file_level(s[m], y[m], files[m])
    return out


def prepare_extra(manifest: Path, work: Path, fps: float, frames_per_clip: int) -> Path:
    """Shards (all ``test``) of an extra test manifest, e.g. real speech and TTS engines that
    training never saw, on the training data's clip grid."""
    from pipeline.prepare import PrepareConfig, prepare_manifest

    cfg = PrepareConfig(fps=fps, frames_per_clip=frames_per_clip, modalities=("audio",))
    return prepare_manifest(manifest, work / f"extra-{manifest.stem}", config=cfg).shards


def evaluate_extra(checkpoint: str, shards: Path) -> dict:
    """Clip- and file-level AUC / EER of ``checkpoint`` on extra shards, and per method."""
    from detector.evaluate import file_level

    ds, s, y = _scores(checkpoint, shards)
    ids, method = _strings(ds, "id"), _strings(ds, "method")
    out = {"clip": _summary(s, y), "file": file_level(s, y, ids)}
    for m in sorted(set(method[y == 1].tolist())):
        keep = (y == 0) | (method == m)
        out[f"method:{m}"] = _summary(s[keep], y[keep])
    return out


def run(args) -> list[dict]:
    from detector.train import train

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    shards, test_shards = build(Path(args.store), work)
    from detector.data import ShardDataset

    all_voc = sorted(set(ShardDataset(test_shards, split="test", modalities=("audio",)).strings("vocoder").tolist())
                     - {""})
    vocoders = args.vocoders.split(",") if args.vocoders else all_voc
    extra = None
    if args.extra_test:
        info = ShardDataset(shards, split="train", modalities=("audio",)).info
        extra = prepare_extra(Path(args.extra_test), work, info["fps"], info["frames_per_clip"])
    rows = []
    for model in args.models.split(","):
        for v in vocoders:
            for seed in (int(x) for x in args.seeds.split(",")):
                out = work / model / v / f"seed{seed}"
                done = out / "result.json"
                if done.exists():
                    rows.append(json.loads(done.read_text()))
                    continue
                cfg = config_for(model, args.preset, Path(args.config) if args.config else None, seed, v)
                t0 = time.perf_counter()
                result = train(shards, out, cfg, progress=False)
                row = {"model": model, "left_out": v, "seed": seed, "minutes": round((time.perf_counter() - t0) / 60, 2),
                       "best_epoch": result["best_epoch"]}
                if v != NONE:
                    row.update(evaluate(result["best_checkpoint"], test_shards, v))
                if extra is not None:
                    row["extra"] = evaluate_extra(result["best_checkpoint"], extra)
                done.write_text(json.dumps(row))
                rows.append(row)
                said = (f"unseen AUC {row['unseen']['auc']:.3f} (file {row['unseen_file']['auc']:.3f}), "
                        f"seen {row['seen']['auc']:.3f}, ") if v != NONE else ""
                if extra is not None:
                    said += f"extra AUC {row['extra']['clip']['auc']:.3f} (file {row['extra']['file']['auc']:.3f}), "
                print(f"{model:8s} without {v:17s} seed {seed}: {said}{row['minutes']} min", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lovo = [r for r in rows if r["left_out"] != NONE]
    models = list(dict.fromkeys(r["model"] for r in lovo))
    vocs = list(dict.fromkeys(r["left_out"] for r in lovo))

    def stats(vals):
        return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else (np.nan, np.nan, 0)

    def cell(model, voc, key, metric="auc"):
        return stats([r[key][metric] for r in lovo if r["model"] == model and r["left_out"] == voc])

    lines = []
    for key, title in (("unseen", "clip level"), ("unseen_file", "file level")):
        if not lovo:
            break
        lines += [f"Unseen-vocoder AUC, {title} (mean ± sd over seeds; test speakers' real clips vs the left-out "
                  "vocoder's conversions of them)", "",
                  "| model | " + " | ".join(vocs) + " | mean | EER mean | seen AUC |",
                  "|---|" + "---|" * (len(vocs) + 3)]
        for m in models:
            cells = [cell(m, v, key) for v in vocs]
            eers = [cell(m, v, key, "eer")[0] for v in vocs]
            seen = [cell(m, v, "seen")[0] for v in vocs]
            n = max(c[2] for c in cells)
            lines.append(f"| {m} ({n} seeds) | " + " | ".join(f"{a:.3f} ± {s:.3f}" for a, s, _ in cells)
                         + f" | **{np.nanmean([c[0] for c in cells]):.3f}** | {np.nanmean(eers):.3f} | "
                         f"{np.nanmean(seen):.3f} |")
        lines.append("")
    extra = [r for r in rows if "extra" in r]
    if extra:
        groups = list(dict.fromkeys((r["model"], r["left_out"]) for r in extra))
        methods = sorted({k for r in extra for k in r["extra"] if k.startswith("method:")})
        lines += ["Extra test set (--extra-test), AUC mean ± sd over seeds", "",
                  "| model | trained without | clip AUC | clip EER | file AUC | "
                  + " | ".join(m.split(":", 1)[1] for m in methods) + " |",
                  "|---|---|---|---|---|" + "---|" * len(methods)]
        for m, v in groups:
            rs = [r["extra"] for r in extra if r["model"] == m and r["left_out"] == v]
            parts = [stats([x["clip"]["auc"] for x in rs]), stats([x["clip"]["eer"] for x in rs]),
                     stats([x["file"]["auc"] for x in rs])] + [stats([x[k]["auc"] for x in rs if k in x])
                                                               for k in methods]
            lines.append(f"| {m} ({len(rs)} seeds) | {v} | " + " | ".join(f"{a:.3f} ± {s:.3f}" for a, s, _ in parts)
                         + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--models", default="logmel,lfcc,lfcc-lr,lfcc-gmm")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--config", help="YAML/JSON laid over the preset (e.g. augmentations)")
    p.add_argument("--vocoders", help="left-out vocoders (default: every vocoder of the store)")
    p.add_argument("--extra-test", help="a manifest scored by every run (e.g. real speech and TTS engines never "
                                        "trained on); with --vocoders none, runs train on every vocoder")
    p.add_argument("--table", help="write the markdown table here (default: print it)")
    p.add_argument("--report-only", action="store_true", help="table the finished runs of --work, train nothing")
    args = p.parse_args(argv)
    if args.report_only:
        rows = [json.loads(f.read_text()) for f in sorted(Path(args.work).glob("*/*/seed*/result.json"))]
    else:
        rows = run(args)
    text = table(rows)
    if args.table:
        Path(args.table).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writing an evaluation report: ``metrics.json``, ``report.md`` and PNG plots (ROC curves,
per-category accuracy, robustness), from the dict :func:`detector.evaluate.evaluate_shards` makes."""

from __future__ import annotations

import json
import math
from pathlib import Path

MODE_TITLES = {"sync": "sync stream", "two_stream": "two-stream (either head)", "video": "video head",
               "audio": "audio head"}
# A trivial cue within this much AUC of the detector (or above 0.75) is flagged in the audit.
SHORTCUT_MARGIN = 0.05


def _f(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def write_report(result: dict, out_dir, title: str = "Evaluation", visuals: list[Path] = ()) -> list[Path]:
    """metrics.json, report.md and the plots in ``out_dir``; returns the files written.
    ``visuals``: PNGs already written under ``out_dir`` (visualizations), linked from the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=_json))
    plots = plot_roc(result, out / "roc.png"), plot_categories(result, out / "categories.png")
    plots += (plot_robustness(result, out / "robustness.png"),) if "robustness" in result else ()
    lines = markdown(result, title, [p for p in plots if p])
    if visuals:
        lines += ["", "## Visualizations", "",
                  ("What the model looks at (definitions in `detector/visualize.py`): face patches with the highest "
                   "and lowest scores, Grad-CAM over frames, mel spectrograms of a real clip and its re-synthesis "
                   "with the attention over time."), ""]
        lines += [f"![{Path(v).stem}]({Path(v).relative_to(out).as_posix()})" for v in visuals]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return [out / "metrics.json", out / "report.md", *[p for p in plots if p]]


def _json(o):
    return float(o) if hasattr(o, "__float__") else str(o)


def markdown(r: dict, title: str, plots: list[Path]) -> list[str]:
    modes = list(r["modes"])
    lines = [f"# {title}", "", f"Model `{r['model']}`; {r['n_samples']} samples of split(s) {', '.join(r['splits'])}."]
    if r.get("note"):
        lines += ["", f"Note: {r['note']}"]
    if "source" in r:
        lines += ["", f"Checkpoint `{r['source'].get('checkpoint')}`, data `{r['source'].get('data')}`."]
        excluded = r["source"].get("not_evaluated") or []
        if excluded:
            lines += ["", f"{len(excluded)} item(s) of the data could not be extracted and are not in these figures:", ""]
            lines += _table(["item", "reason", "detail"],
                            [[e["id"], e["reason"], e["detail"].splitlines()[0].replace("|", "\\|") if e["detail"] else ""]
                             for e in excluded])
    lines += ["", "## Detection (inference modes side by side)", ""]
    lines += _table(["mode", "label", "accuracy", "AUC", "EER", "AP", "n", "fake share"],
                    [[MODE_TITLES[m], "sequence" if m in ("sync", "two_stream") else m, _f(v["acc"]), _f(v["auc"]),
                      _f(v["eer"]), _f(v["ap"]), v["n"], _f(v.get("fake_share"))] for m, v in r["modes"].items()])
    lines += ["", "Accuracy at threshold 0.5; the fake share is what always answering \"fake\" scores."]
    if r.get("modalities"):
        lines += ["", "## Per modality (each head against its own label)", ""]
        lines += _table(["head", "accuracy", "AUC", "EER", "AP", "n"],
                        [[m, _f(v["acc"]), _f(v["auc"]), _f(v["eer"]), _f(v["ap"]), v["n"]]
                         for m, v in r["modalities"].items()])
    lines += ["", "## Per category", "",
              ("Accuracy on the category's samples; AUC, EER and AP of the category against the real samples "
               "(\"-\" for the real category itself, and where there are no real samples)."), ""]
    cats = sorted({c for m in modes for c in r["per_category"][m]})
    rows = []
    for c in cats:
        row = [c, r["per_category"][modes[0]].get(c, {}).get("n", 0)]
        for m in modes:
            v = r["per_category"][m].get(c, {})
            row += [_f(v.get(k)) for k in ("acc", "auc", "eer", "ap")]
        rows.append(row)
    lines += _table(["category", "n", *[f"{h} ({m})" for m in modes for h in ("acc", "AUC", "EER", "AP")]], rows)
    lines += ["", "## Per split", ""]
    lines += _table(["mode", "split", "accuracy", "AUC", "EER", "n"],
                    [[m, sp, _f(v["acc"]), _f(v["auc"]), _f(v["eer"]), v["n"]]
                     for m in modes for sp, v in r["per_split"][m].items()])
    lines += ["", "## Per file (clip scores averaged over each source file)", ""]
    lines += _table(["mode", "accuracy", "AUC", "EER", "files"],
                    [[m, _f(v["acc"]), _f(v["auc"]), _f(v["eer"]), v["n"]] for m, v in r["file_level"].items()])
    lines += _robustness_md(r, modes) + _unseen_md(r, modes) + _shortcuts_md(r, modes)
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return lines


def _robustness_md(r: dict, modes: list[str]) -> list[str]:
    rob = r.get("robustness")
    if not rob:
        return []
    lines = ["", "## Robustness", ""]
    if "skipped" in rob:
        return lines + [rob["skipped"]]
    lines += ["Each corruption applied to the video with probability 0.5 per clip (seeded); drop = clean - corrupted.",
              ""]
    rows = []
    for kind, per_mode in rob.items():
        for m in modes:
            v = per_mode[m]
            rows.append([kind, m, _f(v["acc"]), _f(v["auc"]), _f(v.get("acc_drop")), _f(v.get("auc_drop"))])
    return lines + _table(["corruption", "mode", "accuracy", "AUC", "accuracy drop", "AUC drop"], rows)


def _unseen_md(r: dict, modes: list[str]) -> list[str]:
    u = r.get("unseen")
    if not u:
        return []
    lines = ["", "## Unseen category", ""]
    if "skipped" in u:
        return lines + [u["skipped"]]
    lines += [(f"Held out in training: {', '.join(u['categories'])} ({u['n_heldout']} samples), against the "
               f"{u['n_real']} real samples of the evaluated split(s) ({', '.join(r['splits'])})."), ""]
    return lines + _table(["mode", "accuracy", "AUC", "EER", "AP"],
                          [[m, _f(u[m]["acc"]), _f(u[m]["auc"]), _f(u[m]["eer"]), _f(u[m]["ap"])] for m in modes])


def _shortcuts_md(r: dict, modes: list[str]) -> list[str]:
    lines = ["", "## Shortcut audit", "",
             ("The AUC that each trivial cue reaches alone on the same samples (direction-free). A detector result "
              "means little when a trivial cue reaches it too."), ""]
    labels = sorted({lab for cue in r["shortcuts"].values() for lab in cue})
    heads = {**r.get("modalities", {}), **{m: v for m, v in r["modes"].items() if m in ("video", "audio")}}
    det = {"sequence_fake": max([r["modes"][m]["auc"] for m in modes if m in ("sync", "two_stream")] or [float("nan")]),
           "video_fake": heads.get("video", {}).get("auc", float("nan")),
           "audio_fake": heads.get("audio", {}).get("auc", float("nan"))}
    rows, flagged = [], []
    for cue, per_label in r["shortcuts"].items():
        rows.append([cue, *[_f(per_label.get(lab)) for lab in labels]])
        for lab in labels:
            a, d = per_label.get(lab, float("nan")), det.get(lab, float("nan"))
            if not math.isnan(a) and (a >= 0.75 or (not math.isnan(d) and a >= d - SHORTCUT_MARGIN)):
                flagged.append(f"**{cue}** reaches AUC {a:.3f} on {lab} (detector: {_f(d)})")
    lines += _table(["cue", *labels], rows)
    return lines + ([""] + [f"- warning: {f}" for f in flagged] if flagged else ["", "No cue comes close."])


# ---- plots -----------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _labelled(ax, bars, values) -> None:
    """Each bar's value above it, so that a zero bar reads as 0 and not as missing (NaN: "-")."""
    ax.bar_label(bars, ["-" if v is None or math.isnan(v) else f"{v:.2f}" for v in values], fontsize=7, padding=1)


def plot_roc(r: dict, path: Path) -> Path | None:
    curves = {m: c for m, c in r["curves"].items() if c["fpr"]}
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for m, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], label=f"{MODE_TITLES[m]} (AUC {_f(r['modes'][m]['auc'])})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_categories(r: dict, path: Path) -> Path | None:
    modes = list(r["per_category"])
    cats = sorted({c for m in modes for c in r["per_category"][m]})
    if not cats:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(cats) * len(modes)), 4))
    width = 0.8 / len(modes)
    for k, m in enumerate(modes):
        acc = [r["per_category"][m].get(c, {}).get("acc", float("nan")) for c in cats]
        _labelled(ax, ax.bar([i + k * width for i in range(len(cats))], acc, width, label=MODE_TITLES[m]), acc)
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(cats))], cats, rotation=30, ha="right",
                  fontsize=8)
    ax.set(ylabel="accuracy", ylim=(0, 1.25), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0], title="Accuracy per category")
    ax.legend(fontsize=8, loc="upper left", ncol=len(modes))  # above the bars and their values
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_robustness(r: dict, path: Path) -> Path | None:
    rob = r["robustness"]
    if "skipped" in rob:
        return None
    plt = _plt()
    kinds, modes = list(rob), list(r["modes"])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(modes)
    for k, m in enumerate(modes):
        auc = [rob[kind][m]["auc"] for kind in kinds]
        _labelled(ax, ax.bar([i + k * width for i in range(len(kinds))], auc, width, label=MODE_TITLES[m]), auc)
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(kinds))], kinds, rotation=15, fontsize=8)
    ax.set(ylabel="AUC", ylim=(0, 1.25), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0],
           title="Robustness (corruption with p = 0.5)")
    ax.legend(fontsize=8, loc="upper left", ncol=len(modes))  # above the bars and their values
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

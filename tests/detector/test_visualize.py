"""Visualizations of what the detector looks at, on shards of the real sample media (untrained
tiny models: the mechanics, not what a trained model finds)."""

import numpy as np
import pytest
import torch
import zarr
from PIL import Image

from detector import config as C
from detector import visualize as V
from detector.augment import Augment
from detector.builder import build_model, model_class
from detector.data import ShardDataset
from tests.conftest import torch_threads

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


one_thread = torch_threads(1)


def setup(shards, name: str):
    """(untrained tiny model in eval mode, its dataset over all splits with the eval transform)."""
    cfg = C.tiny(name)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    mods = model_class(name).modalities
    ds = ShardDataset(shards, split=None, modalities=mods, require=mods, transform=Augment.for_model(cfg, train=False))
    return model, ds


def sample(ds, i: int) -> dict:
    return ds[i]


@pytest.mark.parametrize("name, kinds", [("av", {"patches", "cam", "mel"}), ("av-noatt", {"patches", "cam", "mel"}),
                                         ("video", {"patches", "cam"}), ("audio", {"mel"})])
def test_writes_the_pngs_that_apply_to_each_model(av_shards, tmp_path, name, kinds):
    model, ds = setup(av_shards, name)
    paths = V.visualize(model, ds, tmp_path / "vis", n=2)
    assert paths and all(p.parent == tmp_path / "vis" and p.is_file() for p in paths)
    assert {p.name.split("_")[0] for p in paths} == kinds
    assert ((tmp_path / "vis" / "patches_summary.png") in paths) == ("patches" in kinds)
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 20_000, p.name
        with Image.open(p) as im:
            assert im.width >= 600 and im.height >= 250, (p.name, im.size)
    per_sample = [p for p in paths if p.name.startswith(("patches_0", "cam_"))]
    assert len(per_sample) == (4 if "cam" in kinds else 0)  # 2 samples x (patch sheet, Grad-CAM strip)
    assert model.training is False
    ex = V.explain(model, sample(ds, 0))
    assert ex["has_attention"] == (name == "av")
    if "mel" in kinds:
        assert ("attention" in ex["curve_label"]) == (name == "av")
        assert "Grad-CAM" in ex["curve_label"] or name == "av"


def test_grad_cam_is_a_normalised_non_negative_map_per_frame_that_follows_the_input(av_shards):
    model, ds = setup(av_shards, "av")
    s = sample(ds, 0)
    ex = V.explain(model, s)
    frames, crop = s["video"].shape[0], s["video"].shape[-1]
    assert ex["cam"].shape == (frames, crop, crop) == ex["frames"].shape[:3]
    assert ex["cam"].min() >= 0 and ex["cam"].max() == pytest.approx(1.0)
    assert ex["main"] == "sync" and ex["video_stage"] == "video.stage4"
    other = V.explain(model, {**s, "video": s["video"].flip(-1)})  # mirrored faces
    assert not np.allclose(ex["cam"], other["cam"], atol=1e-3)
    assert V.explain(model, s)["cam"] == pytest.approx(ex["cam"])  # deterministic in eval mode
    # the attention each frame receives: a per-step mean that is 1 for uniform attention
    assert ex["frame_weight"].shape == (frames,) and ex["frame_weight"].mean() == pytest.approx(1.0, abs=1e-5)
    # the audio stream of an audio model: a curve over mel frames, normalised
    audio_model, audio_ds = setup(av_shards, "audio")
    ex = V.explain(audio_model, sample(audio_ds, 0))
    # the audio model reads 60 LFCC rows (20 with deltas), its default front-end
    assert ex["mel_curve"].shape == (ex["mel"].shape[-1],) and ex["mel"].shape[0] == 60 and ex["frontend"] == "lfcc"
    assert ex["mel_curve"].min() >= 0 and ex["mel_curve"].max() == pytest.approx(1.0)


def test_grad_cam_and_attention_definitions():
    a = torch.rand(2, 3, 4, 5, 5)
    g = torch.randn(2, 3, 4, 5, 5)
    expected = torch.relu(torch.einsum("bc,bcthw->bthw", g.mean(dim=(2, 3, 4)), a))
    assert torch.allclose(V.grad_cam(a, g), expected, atol=1e-6)
    w = torch.softmax(torch.randn(2, 3, 6, 4), -1)  # (B, heads, queries, keys)
    att = {"layer0.audio_video": w, "layer1.audio_video": w.flip(-1), "layer0.video_audio": torch.zeros_like(w)}
    got = V.attention_received(att, "audio_video")
    assert torch.allclose(got, (w.mean(dim=(1, 2)) + w.flip(-1).mean(dim=(1, 2))) / 2 * 4)
    assert V.attention_received(att, "video_self") is None
    assert V.stretch(np.array([1.0, 2.0]), 5).tolist() == [1.0, 1.0, 1.0, 2.0, 2.0]


def test_patch_scores_pick_ten_percent_of_the_patches(av_shards):
    model, ds = setup(av_shards, "av")
    ex = V.explain(model, sample(ds, 0))
    strip = V.strip_frames(len(ex["frames"]))
    scores, p, off = V.patch_scores(ex["cam"], ex["frame_weight"], strip)
    assert len(strip) == V.STRIP_FRAMES and scores.shape == (len(strip), V.PATCH_GRID, V.PATCH_GRID)
    f, r, c = strip[3], 2, 5  # one patch by hand: its frame's attention x its mean Grad-CAM
    cell = ex["cam"][f, off + r * p:off + (r + 1) * p, off + c * p:off + (c + 1) * p]
    assert scores[3, r, c] == pytest.approx(ex["frame_weight"][f] * cell.mean(), rel=1e-5)
    top, bottom = V.extreme_patches(scores)
    assert len(top) == len(bottom) == round(0.1 * scores.size) == 39
    flat = scores.ravel()
    assert flat[top].min() >= np.delete(flat, top).max() and flat[bottom].max() <= np.delete(flat, bottom).min()
    assert list(flat[top]) == sorted(flat[top], reverse=True)
    top, bottom = V.extreme_patches(np.array([[0.2, 0.9, 0.1]]))  # at least one each
    assert top.tolist() == [1] and bottom.tolist() == [2]
    patches, where = V._cut(ex["frames"], strip, top, V.PATCH_GRID, p, off)
    assert patches.shape == (1, p, p, 3) and where[0][0] == strip[0]


def test_mel_pairs_share_their_source(av_shards):
    model, ds = setup(av_shards, "audio")
    pairs = sorted(set(V.source_pairs(ds).values()))
    assert len(pairs) >= 4
    g = zarr.open_group(str(av_shards), mode="r")
    source, origin, shift = g["audio/source"][:], g["audio/source_sample"][:], g["audio/shift"][:]
    clip, audio, ids, cats = ds.table["clip"], ds.table["audio"], ds.strings("id"), ds.strings("category")
    for real, fake in pairs:
        ar, af = audio[real], audio[fake]
        assert clip[real] == clip[fake] and origin[ar] == origin[af] and ids[real] == ids[fake]
        assert source[ar] == "real" and shift[ar] == 0 and source[af] == "griffinlim"
        assert "vocoder:griffinlim" in cats[fake] and "vocoder" not in cats[real]
    # and their content agrees: the re-synthesis is closer to its source than any other clip
    mels = {i: V.explain(model, sample(ds, i))["mel"].ravel() for pair in pairs[:4] for i in pair}
    for real, fake in pairs[:4]:
        same = np.corrcoef(mels[real], mels[fake])[0, 1]
        others = [np.corrcoef(mels[real], mels[o])[0, 1] for o, _ in pairs[:4] if o != real]
        assert same > 0.9 and same > max(others)


def test_picks_are_deterministic_and_spread_over_categories(av_shards):
    _, ds = setup(av_shards, "video")
    cats = ds.strings("category")
    picked = V.pick_samples(ds, 5, seed=0)
    assert picked == V.pick_samples(ds, 5, seed=0) and len(set(picked)) == 5
    assert cats[picked[0]] == "real" and len({cats[i] for i in picked}) == min(5, len(set(cats)))
    assert V.pick_samples(ds, 10_000, seed=1) and len(V.pick_samples(ds, 10_000, seed=1)) == len(ds)

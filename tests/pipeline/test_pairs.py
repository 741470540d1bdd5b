"""Pair planning on a synthetic store view (mechanics; the real-media test is test_shards.py)."""

from collections import Counter

import numpy as np
import pytest

from pipeline.pairs import PairConfig, StoreView, plan_samples


def view():
    """Items: 0 real talking head (2 clips), 1 fake video with real audio (2 clips), 2 real
    video without audio (FF++), 3 real speech (audio only), 4 spoofed speech (audio only)."""
    item = np.array([0, 0, 1, 1, 2, 3, 4])
    hv = np.array([1, 1, 1, 1, 1, 0, 0], bool)
    ha = np.array([1, 1, 1, 1, 0, 1, 1], bool)
    vl = np.array([0, 0, 1, 1, 0, -1, -1], np.int8)
    al = np.array([0, 0, 0, 0, -1, 0, 1], np.int8)
    method = np.array(["", "", "NeuralTextures", "NeuralTextures", "", "", "A07"])
    conv = {"griffinlim": ha & (al == 0), "world": ha & (al == 0)}
    conv["world"][1] = False  # one failed conversion
    return StoreView(usable=np.ones(7, bool), has_video=hv, has_audio=ha, video_label=vl, audio_label=al,
                     method=method, item=item, identity=np.array(["p", "p", "q", "q", "r", "s", "t"]),
                     item_split=np.array(["train", "train", "val", "train", "test"]), converted=conv,
                     samples_per_frame=640)


def test_own_and_vocoded_pairs_and_their_labels():
    s, report = plan_samples(view(), PairConfig())
    rows = list(zip(s.pair, s.clip, s.audio, s.video_fake, s.audio_fake, s.sequence_fake, s.category))
    assert ("own", 2, ("real", 2, 0), 1, 0, 1, "video:NeuralTextures") in rows
    assert ("own", 4, None, 0, 0, 0, "real") in rows  # video without audio
    assert ("own", -1, ("real", 6, 0), 0, 1, 1, "audio:A07") in rows  # a dataset's spoof
    assert ("vocoded", 2, ("world", 2, 0), 1, 1, 1, "video:NeuralTextures+vocoder:world") in rows
    assert ("vocoded", -1, ("griffinlim", 5, 0), 0, 1, 1, "vocoder:griffinlim") in rows
    assert not any(p == "vocoded" and a == ("world", 1, 0) for p, _, a, *_ in rows)  # failed conversion
    assert Counter(s.pair) == {"own": 7, "vocoded": 9}
    assert report["skipped"] == {"unlabelled": 0, "not_extracted": 0}


def test_sync_pairs_use_real_video_and_real_audio_only():
    s, _ = plan_samples(view(), PairConfig(pairs=("shifted", "swapped"), seed=3))
    assert Counter(s.pair) == {"shifted": 2, "swapped": 2}  # only item 0's clips are real+real
    for pair, clip, audio, off in zip(s.pair, s.clip, s.audio, s.sync_offset):
        assert clip in (0, 1) and audio[0] == "real"
        if pair == "shifted":
            assert audio[1] == clip and 4 <= abs(off) <= 16 and audio[2] == off * 640
        else:
            assert audio[1] != clip and audio[1] in (0, 1)  # the other clip of the same item
    assert all(q == 1 for q in s.sequence_fake)


def test_random_vocoder_mode_and_vocoder_choice():
    s, _ = plan_samples(view(), PairConfig(pairs=("vocoded",), vocoder_mode="random", seed=0))
    assert len(s) == 5 and set(s.vocoder) <= {"griffinlim", "world"}
    s, _ = plan_samples(view(), PairConfig(pairs=("vocoded",), vocoders=("world",)))
    assert set(s.vocoder) == {"world"} and len(s) == 4
    with pytest.raises(ValueError, match="no conversion with"):
        plan_samples(view(), PairConfig(vocoders=("melgan",)))


def test_holdout_moves_a_category_out_of_every_split():
    s, report = plan_samples(view(), PairConfig(holdout_category="world"))
    held = [v for v, sp in zip(s.vocoder, s.split) if sp == "holdout"]
    assert held and set(held) == {"world"} and report["holdout"]["moved"] == len(held)
    assert "world" not in [v for v, sp in zip(s.vocoder, s.split) if sp != "holdout"]
    s, _ = plan_samples(view(), PairConfig(holdout_category="NeuralTextures"))
    assert {c for c, sp in zip(s.category, s.split) if sp == "holdout"} == {
        "video:NeuralTextures", "video:NeuralTextures+vocoder:griffinlim", "video:NeuralTextures+vocoder:world"}
    with pytest.raises(ValueError, match="Unknown category"):
        plan_samples(view(), PairConfig(holdout_category="FaceSwap"))


def test_balance_by_label_and_by_category():
    s, report = plan_samples(view(), PairConfig(balance="label"))
    for split in set(s.split):
        labels = Counter(q for q, sp in zip(s.sequence_fake, s.split) if sp == split)
        assert len(set(labels.values())) == 1 or len(labels) == 1
    assert report["balance"]["dropped"] > 0
    s, _ = plan_samples(view(), PairConfig(balance="category"))
    for split in set(s.split):
        assert len(set(Counter(c for c, sp in zip(s.category, s.split) if sp == split).values())) == 1


def test_unpaired_ablation_moves_audio_with_its_labels():
    base, _ = plan_samples(view(), PairConfig(seed=5))
    s, _ = plan_samples(view(), PairConfig(unpaired=True, seed=5))
    assert len(s) == len(base)
    label_of = {(a, af) for a, af in zip(base.audio, base.audio_fake)}
    assert {(a, af) for a, af in zip(s.audio, s.audio_fake)} == label_of  # each audio keeps its label
    for i in range(len(s)):
        assert s.sequence_fake[i] == int(s.video_fake[i] or s.audio_fake[i])
    moved = [i for i in range(len(s)) if s.pair[i] == "unpaired"]
    assert moved and any(s.audio[i] != base.audio[i] for i in moved)


def test_unlabelled_samples_are_kept_for_inference_only():
    v = view()
    v.video_label[:] = -1
    v.audio_label[5] = -1  # real speech of unknown label
    s, report = plan_samples(v, PairConfig(pairs=("own", "vocoded", "shifted")))
    assert "unlabelled" not in s.category and report["skipped"]["unlabelled"] == 2  # items 2 and 5
    s, _ = plan_samples(v, PairConfig(pairs=("own", "vocoded", "shifted"), keep_unlabelled=True))
    rows = [r for r in zip(s.clip, s.audio, s.video_fake, s.audio_fake, s.sequence_fake, s.category, s.pair)
            if r[5] == "unlabelled"]
    assert (0, ("real", 0, 0), -1, 0, -1, "unlabelled", "own") in rows  # video unknown, audio real
    assert (-1, ("real", 5, 0), 0, -1, -1, "unlabelled", "own") in rows  # audio only, unknown
    assert len(rows) == 6  # one own sample per unlabelled clip; no pairs are made from them
    assert ("own", -1, ("real", 6, 0)) in list(zip(s.pair, s.clip, s.audio))  # labelled spoof unchanged


def test_bad_config():
    with pytest.raises(ValueError, match="pair type"):
        PairConfig(pairs=("own", "mirrored"))
    with pytest.raises(ValueError, match="balance"):
        PairConfig(balance="oversample")

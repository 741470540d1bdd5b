"""Property-based tests (hypothesis): manifest parsing, leak-free splits, the shard and clip
planners hold for any input, not only for the examples written elsewhere."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.extract import ExtractConfig, plan_audio_starts, plan_starts, prepare_store
from pipeline.manifest import ManifestRow, read_manifest
from pipeline.splits import SPLITS, assign_splits

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
label = st.sampled_from(["real", "fake", None])


@st.composite
def rows(draw):
    ids = draw(st.lists(text, min_size=1, max_size=8, unique=True))
    out = []
    for i in ids:
        out.append(ManifestRow(id=i, path=draw(text) + ".wav", media=draw(st.sampled_from(["video", "audio"])),
                               video_label=draw(label), audio_label=draw(label), method=draw(st.none() | text),
                               identity=draw(st.none() | text), has_audio=draw(st.none() | st.booleans()),
                               extra={"k": draw(st.integers() | text)}))
    return out


@SETTINGS
@given(rows())
def test_manifest_rows_survive_writing_and_reading(rs):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.jsonl"
        p.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rs), encoding="utf-8")
        assert [r.to_dict() for r in read_manifest(p)] == [r.to_dict() for r in rs]


@SETTINGS
@given(rows(), st.lists(st.integers(0, 7), max_size=3, unique=True))
def test_every_bad_line_of_a_manifest_is_named(rs, bad):
    lines = [json.dumps(r.to_dict()) for r in rs]
    bad = sorted(b for b in bad if b < len(lines))
    for b in bad:
        lines[b] = lines[b][:-1]  # cut short: not JSON
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.jsonl"
        p.write_text("\n".join(lines) + "\n")
        try:
            read_manifest(p)
            named = []
        except ValueError as e:
            named = sorted(int(x.split(":")[0]) - 1 for x in str(e).split("line ")[1:])
    assert named == bad


ident = st.sampled_from([None, "p1", "p2", "p3", "p4", "p5"])
split = st.sampled_from([None, None, "train", "val", "test"])


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), ident, split), min_size=1, max_size=30),
       st.integers(0, 3), st.booleans())
def test_no_group_or_identity_is_in_two_splits(items, seed, keep_given):
    its = [{"id": f"x{n}", "group": g, "identity": i, "split": s} for n, (g, i, s) in enumerate(items)]
    got, report = assign_splits(its, seed=seed, keep_given=keep_given)
    assert len(got) == len(its) and set(got) <= set(SPLITS)
    for key in ("group", "identity"):
        seen: dict = {}
        for it, sp in zip(its, got):
            if it[key] is not None:
                assert seen.setdefault(it[key], sp) == sp, (key, it[key])
    again, _ = assign_splits(list(reversed(its)), seed=seed, keep_given=keep_given)
    assert list(reversed(again)) == got  # independent of the order of the items


@SETTINGS
@given(st.integers(0, 2000), st.integers(1, 64), st.integers(1, 8))
def test_clips_are_inside_the_media_and_do_not_overlap(total, frames, clips):
    starts = plan_starts(total, frames, clips)
    assert len(starts) == min(clips, total // frames)
    assert all(0 <= s and s + frames <= total for s in starts)
    assert all(b - a >= frames for a, b in zip(starts, starts[1:]))


@SETTINGS
@given(st.integers(0, 2000), st.integers(1, 64), st.integers(1, 64), st.integers(1, 80))
def test_audio_clips_are_inside_the_media_on_the_hop_grid(total, frames, hop, clips):
    starts = plan_audio_starts(total, frames, hop, clips)
    every = (total - frames) // hop + 1 if total >= frames else 0
    assert len(starts) == min(clips, every)
    assert all(0 <= s and s + frames <= total for s in starts)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(g == hop for g in gaps) if every <= clips else all(g >= hop for g in gaps)  # every clip, or spread


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 9), st.integers(1, 4), st.integers(1, 3))
def test_shards_tile_the_sample_axis(n_items, per_shard, clips):
    cfg = ExtractConfig(items_per_shard=per_shard, clips_per_video=clips, clips_per_audio=clips)
    items = [ManifestRow(id=f"i{k}", path=f"{k}.wav", media="audio") for k in range(n_items)]
    with tempfile.TemporaryDirectory() as d:
        plan = prepare_store(Path(d) / "s.zarr", items, cfg)
    K, N = plan["shard_size"], plan["n_samples"]
    assert N == n_items * clips and K == per_shard * clips
    covered = [s for sh in range(plan["n_shards"]) for s in range(sh * K, min(N, (sh + 1) * K))]
    assert covered == list(range(N))  # every sample in exactly one shard, the shards in order
    assert plan["n_shards"] == 0 or (plan["n_shards"] - 1) * K < N  # no empty shard

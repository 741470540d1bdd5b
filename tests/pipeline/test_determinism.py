"""Determinism: the same manifest and config give the same store, byte for byte, with 0, 1 and
2 workers and across runs (extract, then Griffin-Lim and WORLD conversions: Griffin-Lim's random
initial phase is seeded, so a seed gives the same conversion in every run and another seed
another one)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline import store as st
from pipeline.cli import main

pytestmark = pytest.mark.slow  # three local clusters: about a minute on 2 cores

EXTRACT = ["--frames-per-clip", "8", "--clips-per-video", "2", "--clips-per-audio", "2", "--items-per-shard", "1", "--detect-every", "8",
           "--no-progress"]


@pytest.fixture(scope="module")
def manifest(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    for src in ["talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "talking/liveportrait_d10.mp4",
                "speech/psphinx_numbers.wav", "speech/psphinx_goforward.wav"]:
        shutil.copy(sample_data / src, root / src.split("/")[-1])
    out = root / "m.jsonl"
    res = CliRunner().invoke(main, ["manifest", "folder", str(root), "-o", str(out), "--default-label", "real"])
    assert res.exit_code == 0, res.output
    return out


def _run(args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def _arrays(store) -> dict[str, np.ndarray]:
    """Every array of the store but the markers, by path."""
    g = zarr.open_group(str(store), mode="r")
    return {name: node[:] for name, node in g.members(max_depth=None)
            if isinstance(node, zarr.Array) and not name.startswith("_markers")}


def _checksums(store, names, n_shards) -> dict:
    return {(n, s): st.shard_checksums(store, [n], s)[n] for n in names for s in range(n_shards)}


def test_the_same_store_with_0_1_and_2_workers_and_across_runs(manifest, tmp_path):
    stores = {}
    for label, workers in [("w0", 0), ("w1", 1), ("w2", 2), ("w0-again", 0)]:
        store = tmp_path / f"{label}.zarr"
        _run(["extract", manifest, "--store", store, "--workers", workers, *EXTRACT])
        _run(["convert", "--store", store, "--vocoder", "griffinlim", "--option", "n_iter=8", "--workers", workers,
              "--no-progress"])
        _run(["convert", "--store", store, "--vocoder", "world", "--workers", workers, "--no-progress"])
        stores[label] = store
    ref = _arrays(stores["w0"])
    assert {"video/face", "video/box", "audio/real", "audio/fake/griffinlim", "audio/fake/world",
            "quality/world/mcd"} <= set(ref)
    assert np.isfinite(ref["quality/griffinlim/mcd"]).all()
    n_shards = st.store_attrs(stores["w0"])["stages"]["extract"]["n_shards"]
    sums = _checksums(stores["w0"], sorted(ref), n_shards)
    for label, store in stores.items():
        got = _arrays(store)
        assert sorted(got) == sorted(ref), label
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{label}: {name}")
        assert _checksums(store, sorted(ref), n_shards) == sums, label  # the same bytes on disk


def test_griffinlim_seed_gives_the_same_conversion_in_every_run_and_another_seed_another(manifest, tmp_path):
    base = tmp_path / "base.zarr"
    _run(["extract", manifest, "--store", base, "--workers", 0, *EXTRACT])
    waves = {}
    for label, seed in [("a", 3), ("b", 3), ("c", 4)]:
        store = tmp_path / f"{label}.zarr"
        shutil.copytree(base, store)
        _run(["convert", "--store", store, "--vocoder", "griffinlim", "--option", "n_iter=8", "--option",
              f"seed={seed}", "--workers", 0, "--no-progress"])
        assert st.store_attrs(store)["stages"]["convert:griffinlim"]["info"]["config"]["griffinlim"]["seed"] == seed
        waves[label] = zarr.open_group(str(store), mode="r")["audio/fake/griffinlim"][:]
    assert np.abs(waves["a"]).max() > 0
    np.testing.assert_array_equal(waves["a"], waves["b"])
    assert not np.array_equal(waves["a"], waves["c"])

"""benchmarks/lovo.py, the leave-one-vocoder-out command, end to end on real speech (Griffin-Lim
and WORLD conversions of the sample utterances)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lovo():
    spec = importlib.util.spec_from_file_location("lovo", ROOT / "benchmarks" / "lovo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lovo_trains_without_the_left_out_vocoder_and_tests_on_it(lovo, speech_shards, tmp_path):
    store = speech_shards.parent / "s.zarr"
    quick = tmp_path / "quick.yaml"
    quick.write_text("train: {epochs: 2}\n")
    table = tmp_path / "lovo.md"
    args = ["--store", str(store), "--work", str(tmp_path / "w"), "--models", "lfcc-lr,lfcc-gmm", "--seeds", "0",
            "--vocoders", "world", "--config", str(quick), "--table", str(table)]
    assert lovo.main(args) == 0
    row = json.loads((tmp_path / "w" / "lfcc-lr" / "world" / "seed0" / "result.json").read_text())
    cfg = json.loads((tmp_path / "w" / "lfcc-lr" / "world" / "seed0" / "config.json").read_text())
    assert cfg["train"]["exclude_vocoders"] == ["world"] and cfg["train"]["epochs"] == 2
    assert row["unseen"]["n_fake"] > 0 and row["unseen"]["n_real"] > 0 and 0 <= row["unseen"]["auc"] <= 1
    assert row["unseen"]["n_real"] == row["seen"]["n_real"]  # the same real test clips
    text = table.read_text()
    assert "| lfcc-lr (1 seeds) |" in text and "| lfcc-gmm (1 seeds) |" in text and "| model | world |" in text
    # a rerun takes the finished runs as they are
    before = (tmp_path / "w" / "lfcc-lr" / "world" / "seed0" / "result.json").stat().st_mtime
    assert lovo.main(args) == 0
    assert (tmp_path / "w" / "lfcc-lr" / "world" / "seed0" / "result.json").stat().st_mtime == before

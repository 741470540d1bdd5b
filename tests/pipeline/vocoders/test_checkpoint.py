"""The shared checkpoint utilities, independent of any one vocoder."""

import os
import pickle

import pytest
import torch
from torch import nn

from pipeline.vocoders.checkpoint import (
    CheckpointError, file_hash, fold_weight_norm, load_file, load_into, state_dict_of, strip_prefix,
)


def test_fold_weight_norm_matches_torch_weight_norm():
    torch.manual_seed(0)
    for layer in (nn.Conv1d(4, 6, 3), nn.ConvTranspose1d(6, 4, 8, stride=4)):
        wn = nn.utils.weight_norm(layer)  # old-style weight_g / weight_v
        with torch.no_grad():
            wn.weight_g.mul_(torch.rand_like(wn.weight_g) + 0.5)
        sd = {k: v.detach().clone() for k, v in wn.state_dict().items()}
        assert {"weight_g", "weight_v"} <= set(sd)
        wn(torch.randn(1, layer.in_channels, 16))  # recompute weight from g and v
        folded = fold_weight_norm(sd)
        assert set(folded) == {"weight", "bias"}
        torch.testing.assert_close(folded["weight"], wn.weight.detach())
    new = nn.utils.parametrizations.weight_norm(nn.Conv1d(3, 5, 3))
    sd = fold_weight_norm(new.state_dict())
    torch.testing.assert_close(sd["weight"], new.weight.detach())


def test_prefixes_and_wrappers():
    sd = {"a.weight": torch.ones(2), "b.bias": torch.zeros(1)}
    assert strip_prefix({f"module.{k}": v for k, v in sd.items()}) == sd
    assert strip_prefix({"module.a": sd["a.weight"], "b": sd["b.bias"]}).keys() == {"module.a", "b"}
    for wrapped in (sd, {"model": {"generator": sd, "discriminator": {}}}, {"state_dict": sd, "epoch": 3},
                    {"model_g": sd, "hp_str": "x"}):
        assert state_dict_of(wrapped).keys() == sd.keys()
    with pytest.raises(CheckpointError, match="Cannot find generator weights"):
        state_dict_of({"optimizer": {}, "steps": 3})


def test_load_into_names_what_does_not_fit():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Conv1d(3, 1, 1))
    sd = model.state_dict()
    load_into(model, {f"module.{k}": v for k, v in sd.items()}, "ok.pt")
    bad = dict(sd)
    bad.pop("1.bias")
    bad["0.weight"] = torch.zeros(3, 2, 5)
    bad["extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        load_into(model, bad, "bad.pt")
    msg = str(e.value)
    assert "bad.pt" in msg and "missing 1" in msg and "unexpected 1" in msg and "shape mismatch 1" in msg


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_with_and_without_trust(tmp_path):
    marker = tmp_path / "pwned"
    p = Payload()
    p.marker = marker
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": p}, f)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_file(path)
    with pytest.raises(CheckpointError, match="refusing to load global"):
        load_file(path, trust_pickle=True)
    assert not marker.exists()


def test_plain_checkpoints_load_and_are_hashed(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}}, path)
    assert torch.equal(load_file(path)["state_dict"]["w"], torch.arange(3.0))
    assert file_hash(path) == file_hash(path) and len(file_hash(path)) == 16
    with pytest.raises(CheckpointError, match="not found"):
        load_file(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_file(tmp_path / "junk.pt")

"""Training the neural vocoders: one optimisation step per objective updates every parameter of
every network with finite losses; runs resume exactly; run directories load in convert."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.vocoders import get_vocoder_class, load_vocoder
from pipeline.vocoders.training import TRAINABLE, get_objective
from pipeline.vocoders.training.config import TrainConfig
from pipeline.vocoders.training.data import SegmentSampler, Utterance, split
from pipeline.vocoders.training.trainer import Source, Trainer

from .conftest import one_thread  # noqa: F401


def speech_like(seconds: float, sr: int, f0: float, seed: int) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope and a little noise (mechanics only)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = 0.1 + 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * env
    return (0.3 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def audio_dir(tmp_path):
    d = tmp_path / "speech"
    d.mkdir()
    for i, f0 in enumerate((110, 150, 190, 230)):
        sf.write(d / f"utt{i}.wav", speech_like(1.2, 16000, f0, i), 16000)
    return d


# (vocoder, model config overrides): the vocoders' own tiny() configs, each objective's variants
CASES = [
    ("melgan", {}),
    ("parallel_wavegan", {}),
    ("waveglow", {}),
    ("wavernn", {"mode": "RAW"}),
    ("wavernn", {"mode": "MOL"}),
    ("wavenet", {}),
    ("wavenet", {"out_channels": 2, "output_distribution": "Normal"}),
]


@pytest.mark.parametrize("name,overrides", CASES, ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}"
                                                      for n, o in CASES])
def test_training_step_updates_every_parameter(name, overrides):
    torch.manual_seed(0)
    cls = get_vocoder_class(name)
    config = dataclasses.replace(cls.config_class.tiny(), **overrides)
    voc = cls(config)
    objective_cls = get_objective(name)
    seconds = 0.06 if name == "wavernn" else 0.4  # WaveRNN's GRUs run sample by sample on the CPU
    wav = torch.as_tensor(np.stack([speech_like(seconds, voc.sample_rate, f, 0) for f in (120, 200)]))
    voc = objective_cls.prepare(voc, list(wav.numpy()))
    cfg = TrainConfig(batch_size=2, segment_samples=wav.shape[1], disc_start=0, lr=1e-3, lr_d=1e-3,
                      discriminator=objective_cls.preset("tiny")[1].get("discriminator", {}))
    objective = objective_cls(voc, cfg)
    n = objective.segment_length(wav.shape[1])
    before = {f"{k}.{p}": v.detach().clone() for k, net in objective.nets.items() for p, v in net.named_parameters()}
    # two steps: WaveGlow's coupling output layers start at zero (as the release's), which
    # blocks the gradient to everything before them in the first step
    for step in range(2):
        losses = objective.step(wav[:, :n], step=step)
        assert losses and all(np.isfinite(v) for v in losses.values())
    if name in ("melgan", "parallel_wavegan"):
        assert {"stft_sc", "stft_mag", "adv_g", "feat_match", "loss_d"} <= set(losses)
        assert "discriminator" in objective.nets
    after = {f"{k}.{p}": v for k, net in objective.nets.items() for p, v in net.named_parameters()}
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    if name == "melgan":
        # The hinge loss gives the score layer's bias an exactly zero gradient while every score
        # lies inside the margin (-1 < D < 1, as at initialisation): d/db = -#real + #fake = 0.
        scores = [f"discriminator.model.{i}.model.{len(d.model) - 1}.bias" for i, d in enumerate(objective.discriminator.model)]
        assert set(unchanged) <= set(scores)
        assert all(dict(objective.discriminator.named_parameters())[k[len("discriminator."):]].grad is not None
                   for k in scores)
        unchanged = [k for k in unchanged if k not in scores]
    if name in ("parallel_wavegan", "wavenet"):
        # The last residual block's conv1x1_out feeds nothing: the network sums the skip outputs
        # and discards the final residual output, as the releases do.
        last = f"generator.conv_layers.{config.layers - 1}.conv1x1_out."
        unchanged = [k for k in unchanged if not k.startswith(last)]
    assert not unchanged, f"parameters not updated: {unchanged}"


def test_gan_warm_up_trains_the_generator_only():
    torch.manual_seed(0)
    voc = get_vocoder_class("melgan")(get_vocoder_class("melgan").config_class.tiny())
    objective = get_objective("melgan")(voc, TrainConfig(disc_start=5, discriminator={"num_D": 1, "ndf": 4, "n_layers": 2}))
    d_before = [p.detach().clone() for p in objective.discriminator.parameters()]
    losses = objective.step(torch.as_tensor(speech_like(0.4, 22050, 150, 0)[None, :8192]), step=4)
    assert set(losses) == {"stft_sc", "stft_mag", "loss_g"}
    assert all(torch.equal(a, b) for a, b in zip(d_before, objective.discriminator.parameters()))


def test_every_trainable_vocoder_has_presets():
    assert set(TRAINABLE) == {"melgan", "parallel_wavegan", "waveglow", "wavernn", "wavenet"}
    for name in TRAINABLE:
        cls = get_vocoder_class(name)
        for preset in ("tiny", "base"):
            model, train = get_objective(name).preset(preset)
            cls.config_class(**model)
            TrainConfig(**train)


def _read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _tiny_config(tmp_path, **train):
    import yaml

    path = tmp_path / "cfg.yaml"
    m = dataclasses.asdict(get_vocoder_class("parallel_wavegan").config_class.tiny())
    path.write_text(yaml.safe_dump({"model": {k: list(v) if isinstance(v, tuple) else v for k, v in m.items()},
                                    "train": {"batch_size": 2, "segment_samples": 2048, "disc_start": 2,
                                              "validate_every": 4, "checkpoint_every": 2, "val_seconds": 0.5,
                                              "n_val": 1, **train}}))
    return path


def test_resume_continues_the_same_loss_curve(tmp_path, audio_dir):
    cfg = _tiny_config(tmp_path)
    common = dict(vocoder="parallel_wavegan", source=Source(audio_dir=str(audio_dir)), config_file=cfg,
                  max_steps=7, device="cpu", progress=False)
    full = Trainer(out=tmp_path / "full", **common).run()
    stopped = Trainer(out=tmp_path / "cut", stop_after=5, **common).run()
    assert stopped == {"stopped_at": 5}  # the last state was written at step 4 (checkpoint_every 2)
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(out=tmp_path / "cut", **common).run()
    resumed = Trainer(out=tmp_path / "cut", resume=True, **{**common, "config_file": None}).run()
    assert resumed["steps"] == full["steps"] == 7
    a, b = _read(tmp_path / "full" / "log.csv"), _read(tmp_path / "cut" / "log.csv")
    assert [r["step"] for r in b] == [str(s) for s in range(1, 8)]
    assert "loss_d" in b[-1]  # the discriminator started at step 2 in both
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}
    va, vb = _read(tmp_path / "full" / "val.csv"), _read(tmp_path / "cut" / "val.csv")
    assert [(r["step"], r["mcd"]) for r in va] == [(r["step"], r["mcd"]) for r in vb]
    wa = torch.load(tmp_path / "full" / "checkpoints" / "step-0000007.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "cut" / "checkpoints" / "step-0000007.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_run_directory_loads_as_its_best_checkpoint(tmp_path, audio_dir):
    out = tmp_path / "run"
    summary = Trainer("parallel_wavegan", out, Source(audio_dir=str(audio_dir)), config_file=_tiny_config(tmp_path),
                      max_steps=3, device="cpu", progress=False).run()
    for f in ("config.yaml", "stats.npy", "log.csv", "val.csv", "best.pt", "state.pt",
              "val/step-0000003/spectrogram.png", "val/step-0000003/0.wav", "checkpoints/step-0000000.pt"):
        assert (out / f).is_file(), f
    voc = load_vocoder("parallel_wavegan", checkpoint=out)
    assert voc.checkpoint == str(out / "best.pt")
    assert voc.info()["trained"] == {"run": str(out.resolve()), "step": summary["best"]["step"],
                                     "vocoder": "parallel_wavegan"}
    stats = np.load(out / "stats.npy")
    assert np.allclose(stats[0], voc.config.stats_mean) and np.allclose(stats[1], voc.config.stats_scale)
    y = voc.copy_synthesize(speech_like(0.5, 16000, 150, 1)[None], 16000)
    assert y.shape == (1, 8000) and np.isfinite(y).all()


def test_split_holds_out_whole_files():
    names = [f"u{i}.wav" for i in range(10)]
    train, val = split(names, 2, seed=0)
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == names
    assert split(names, 2, seed=0) == (train, val)
    with pytest.raises(ValueError, match="more than n_val"):
        split(names[:2], 2, seed=0)


def test_sampler_redraws_near_silent_segments(sample_data):
    """Real speech between long pauses: with the silence check, the drawn segments hold speech
    (within 20 dB of the utterance's RMS) far more often than uniform draws do."""
    speech, sr = sf.read(sample_data / "speech" / "psphinx_goforward.wav", dtype="float32")
    assert sr == 16000
    pause = np.zeros(len(speech), np.float32)
    audio = np.concatenate([pause, speech, pause])
    floor = 0.1 * np.sqrt(np.mean(audio.astype(np.float64) ** 2))

    def loud_share(silence_db: float) -> float:
        batch = SegmentSampler([Utterance("u", audio)], 4096, seed=0, silence_db=silence_db).batch(200).numpy()
        return float((np.sqrt((batch.astype(np.float64) ** 2).mean(axis=1)) >= floor).mean())

    uniform, checked = loud_share(0.0), loud_share(20.0)
    assert uniform < 0.5 and checked > 0.9, (uniform, checked)


def test_real_speech_run_learns(tmp_path, sample_data):
    """A few MelGAN steps on real speech: held out by file, the STFT loss falls."""
    speech = sample_data / "speech"
    if not speech.is_dir():
        pytest.skip("no speech/ in the sample data")
    out = tmp_path / "run"
    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"ngf": 4, "n_residual_layers": 1},
                                   "train": {"batch_size": 2, "segment_samples": 4096, "lr": 3e-3,
                                             "validate_every": 1000, "val_seconds": 0.5}}))
    summary = Trainer("melgan", out, Source(audio_dir=str(speech)), config_file=cfg, max_steps=30, device="cpu",
                      progress=False).run()
    assert len(summary["val"]) == 2 and not set(summary["val"]) & set(summary["train"])
    rows = _read(out / "log.csv")
    first = np.mean([float(r["stft_mag"]) for r in rows[:10]])
    last = np.mean([float(r["stft_mag"]) for r in rows[-10:]])
    assert last < first


def _init_run(tmp_path, audio_dir, vocoder, checkpoint):
    """Two fine-tuning steps from ``checkpoint``; returns the run's model config."""
    import yaml

    cfg = tmp_path / "init.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"batch_size": 1, "segment_samples": 2048, "validate_every": 100,
                                             "val_seconds": 0.15, "n_val": 1}}))
    out = tmp_path / f"init-{vocoder}"
    summary = Trainer(vocoder, out, Source(audio_dir=str(audio_dir)), config_file=cfg, init=checkpoint, max_steps=2,
                      device="cpu", progress=False).run()
    assert summary["steps"] == 2 and len(_read(out / "log.csv")) == 2
    return yaml.safe_load((out / "config.yaml").read_text())["model"]


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_r9y9_v02_layout_without_conv1x1c_bias_loads_and_fine_tunes(tmp_path, audio_dir):
    """r9y9's current code builds conv1x1c with bias=False: such a checkpoint loads (outputs equal
    the reference module's) and --init trains from it."""
    from pipeline.vocoders.wavenet import WaveNet, WaveNetVocoder

    from .test_wavenet import V02, _weight_normed_state_dict

    cfg = dataclasses.replace(V02, cin_bias=False)
    ref, sd = _weight_normed_state_dict(WaveNet(cfg))
    assert not any(k.endswith("conv1x1c.bias") for k in sd) and "conv_layers.0.conv1x1c.weight_v" in sd
    path = tmp_path / "checkpoint_step000100000.pth"
    torch.save({"state_dict": sd, "global_step": 100000}, path)
    path.with_suffix(".json").write_text(json.dumps({"layers": cfg.layers, "stacks": cfg.stacks, "cin_pad": 2,
                                                     "output_distribution": "Normal", "log_scale_min": -9.0}))
    voc = WaveNetVocoder.from_checkpoint(path)
    assert voc.config.cin_bias is False and voc.config.upsample_net == "ConvInUpsampleNetwork"
    ref.eval()
    x, mel = torch.rand(1, 1, 512) * 2 - 1, torch.rand(1, 80, 2)
    with torch.no_grad():
        assert torch.allclose(voc.model(x, mel), ref(x, mel), atol=1e-5)
    mel = torch.rand(1, 80, 2)
    y, z = (voc.generate(mel, incremental=inc, seed=1) for inc in (True, False))  # the cached path folds no bias
    assert y.shape == (1, 512) and torch.allclose(y, z, atol=1e-4)
    model = _init_run(tmp_path, audio_dir, "wavenet", path)
    assert model["cin_bias"] is False


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_pwg_config_with_upsample_params_written_back_loads_and_fine_tunes(tmp_path, audio_dir):
    """ParallelWaveGANGenerator adds aux_channels, aux_context_window and use_causal_conv to its
    upsample_params; a config.yml written after building the model has them."""
    import yaml

    from pipeline.vocoders.parallel_wavegan import ParallelWaveGAN, ParallelWaveGANConfig, ParallelWaveGANGenerator

    from .test_parallel_wavegan import TINY_PARAMS, V1_CONFIG, release_checkpoint, release_weight_normed, write_stats

    params = {**TINY_PARAMS, "upsample_params": {**TINY_PARAMS["upsample_params"], "aux_channels": 80,
                                                 "aux_context_window": 1, "use_causal_conv": False}}
    ref = release_weight_normed(ParallelWaveGANGenerator(ParallelWaveGANConfig.from_generator_params(TINY_PARAMS)))
    d = tmp_path / "release"
    d.mkdir()
    torch.save(release_checkpoint(ref), d / "checkpoint-400000steps.pkl")
    (d / "config.yml").write_text(yaml.dump({**V1_CONFIG, "generator_params": params}))
    mean, _ = write_stats(d, kind="npy")
    voc = ParallelWaveGAN.from_checkpoint(d / "checkpoint-400000steps.pkl")
    assert (voc.config.aux_context_window, voc.config.layers) == (1, 4)
    z, c = torch.randn(1, 1, 4 * 256), torch.randn(1, 80, 4 + 2)
    with torch.no_grad():
        torch.testing.assert_close(voc.model(z, c), ref(z, c), rtol=1e-4, atol=1e-5)
    bad = {**params, "upsample_params": {**params["upsample_params"], "aux_context_window": 3}}
    (d / "config.yml").write_text(yaml.dump({**V1_CONFIG, "generator_params": bad}))
    with pytest.raises(ValueError, match="upsample_params.aux_context_window = 3 differs"):
        ParallelWaveGAN.from_checkpoint(d / "checkpoint-400000steps.pkl")
    (d / "config.yml").write_text(yaml.dump({**V1_CONFIG, "generator_params": params}))
    model = _init_run(tmp_path, audio_dir, "parallel_wavegan", d / "checkpoint-400000steps.pkl")
    assert np.allclose(model["stats_mean"], mean)  # fine-tuning keeps the release's statistics

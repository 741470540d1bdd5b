"""Typed configs of the detector: model, augmentation, training, and the experiment holding them.

Every run saves its resolved :class:`ExperimentConfig` (and the package version) next to its
checkpoints; ``tiny`` presets train in minutes on a CPU, ``base`` presets are for GPUs.
Configs load from JSON or YAML files holding any subset of the fields (the rest keep defaults).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

@dataclass
class VideoStreamConfig:
    """(2+1)D ResNet over face crops (B, F, 3, H, W)."""

    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels of the 4 stages (R(2+1)D-18 uses 64-512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # residual blocks per stage (18-layer layout)
    stem_width: int = 64
    temporal_strides: tuple[int, ...] = (1, 1, 2, 2)  # per stage; time is kept early for the sync stream
    dropout: float = 0.2


@dataclass
class AudioStreamConfig:
    """2D ResNet over the log-mel spectrogram (B, 1, n_mels, T) of the clip's audio."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    stem_width: int = 64
    dropout: float = 0.2
    # log-mel front-end; the shards' cached mel uses the same values (docs/shards-format.md)
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    spec_augment: bool = True  # time and frequency masking while training
    # "batch": per-band BatchNorm (learned global normalisation); "instance": each clip's bands to
    # zero mean and unit variance over time (cepstral mean/variance normalisation: removes the
    # channel's fixed colouring, a codec's or microphone's, which otherwise passes for a cue)
    mel_norm: str = "instance"
    # what the ResNet reads (detector/models/audio.py): "logmel" (the shards' cached mel),
    # "lfcc" (linear-frequency cepstra with deltas: keeps the high bands, where vocoder
    # artefacts sit), "linear" (log power spectrogram, every FFT bin) or "sinc" (a learned
    # band-pass filterbank on the raw waveform, RawNet2 / AASIST style)
    frontend: str = "logmel"
    n_lfcc: int = 20  # "lfcc": cepstral coefficients (x3 with deltas and double deltas)
    lfcc_filters: int = 70  # "lfcc": linear-frequency triangular filters
    sinc_filters: int = 70  # "sinc": band-pass filters
    sinc_kernel: int = 129  # "sinc": filter length in samples (odd)


@dataclass
class SyncStreamConfig:
    """Fusion of both streams' features from several levels with intra-modality (self) and
    inter-modality (cross) attention."""

    levels: tuple[int, ...] = (2, 3, 4)  # stages (1-based) whose features are fused
    dim: int = 256  # common feature width
    heads: int = 4
    layers: int = 2  # (self-attention, cross-attention) rounds
    steps: int = 8  # time steps both modalities are aligned to
    dropout: float = 0.1
    attention: bool = True  # False: the "av-noatt" ablation (concatenate and pool, no attention)


@dataclass
class BaselineConfig:
    """The classic baselines (detector/models/baselines.py) on the audio stream's LFCC settings."""

    gmm_components: int = 512  # per class (ASVspoof 2021's LFCC-GMM baseline uses 512)
    gmm_iterations: int = 100  # EM iterations at most
    gmm_frames: int = 100_000  # LFCC frames per class the GMMs are fitted on (drawn at random)


@dataclass
class ModelConfig:
    # a name of detector.builder.MODELS: "av" ({2+1}-stream), "av-noatt", "video", "audio", "mouth",
    # or a classic audio baseline: "lfcc-lr", "lfcc-gmm"
    name: str = "av"
    video: VideoStreamConfig = field(default_factory=VideoStreamConfig)
    audio: AudioStreamConfig = field(default_factory=AudioStreamConfig)
    sync: SyncStreamConfig = field(default_factory=SyncStreamConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    crop: int = 112  # face crops are cropped (randomly when training) to this size
    resize: int = 0  # > 0: face crops are first scaled to this size (then cropped); 0: as stored
    loss_weights: dict = field(default_factory=lambda: {"video": 1.0, "audio": 1.0, "sync": 1.0})


@dataclass
class AugmentConfig:
    """Training augmentations, seeded per sample; each robustness corruption with probability p
    (the paper's protocol uses 0.5)."""

    p_gaussian_noise: float = 0.5
    noise_std: tuple[float, float] = (0.01, 0.05)  # of pixel values in [0, 1]
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 90)
    p_video_compression: float = 0.5
    video_crf: tuple[int, int] = (23, 40)  # H.264 constant rate factor
    p_flip: float = 0.5
    random_crop: bool = True
    p_audio_gain: float = 0.5
    audio_gain_db: tuple[float, float] = (-6.0, 6.0)
    p_audio_noise: float = 0.5
    audio_snr_db: tuple[float, float] = (20.0, 40.0)
    # anti-spoofing augmentations of the audio (detector/augment.py), applied before gain and noise
    p_reverb: float = 0.0
    reverb_rt60: tuple[float, float] = (0.2, 0.8)  # seconds
    reverb_direct_db: tuple[float, float] = (0.0, 10.0)  # late reverberation this far below the direct path
    p_rawboost: float = 0.0
    rawboost: tuple[str, ...] = ("lnl", "isd", "ssi")
    p_codec: float = 0.0
    codecs: tuple[str, ...] = ("mp3", "aac", "opus")
    codec_kbps: tuple[int, int] = (16, 64)
    p_band_limit: float = 0.0
    band_limit_hz: tuple[float, float] = (3400.0, 7000.0)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 500  # at most; never more than warmup_fraction of the run's steps
    warmup_fraction: float = 0.1
    schedule: str = "cosine"  # "cosine" (with linear warm-up) or "constant"
    clip_grad: float = 1.0
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    seed: int = 0
    num_workers: int = 2
    # validations in a row without a better select_on score before stopping (the count is kept in
    # last.pt: --resume continues it, and a run that stopped early stays stopped); 0: never
    early_stopping: int = 5
    select_on: str = "auc"  # validation metric of the main output that picks the best checkpoint
    train_split: str = "train"
    # "": no validation (best.pt = the last model). Shards without this split (or with none of
    # its samples for the model): val_fraction of the training identities are carved out for it
    val_split: str = "val"
    val_fraction: float = 0.15
    pairs: tuple[str, ...] = ()  # pair types to train and validate on; empty: all
    # vocoders whose conversions neither train nor validate (leave-one-vocoder-out, benchmarks/lovo.py)
    exclude_vocoders: tuple[str, ...] = ()
    max_steps: int = 0  # > 0: stop after this many optimizer steps (tests, smoke runs)
    log_every: int = 10  # steps between CSV log rows


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def tiny(name: str = "av") -> ExperimentConfig:
    """Small enough to train in minutes on a CPU."""
    video = VideoStreamConfig(widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1), stem_width=8, dropout=0.1)
    audio = AudioStreamConfig(widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1), stem_width=8, dropout=0.1)
    sync = SyncStreamConfig(levels=(3, 4), dim=32, heads=2, layers=1, steps=8)
    baseline = BaselineConfig(gmm_components=32, gmm_iterations=50, gmm_frames=20_000)
    model = ModelConfig(name=name, video=video, audio=audio, sync=sync, baseline=baseline, crop=64,
                        resize=72)  # 128 px: 112 of 128
    train = TrainConfig(epochs=20, batch_size=8, lr=2e-3, weight_decay=0.01, warmup_steps=10, num_workers=0,
                        early_stopping=0, log_every=5)
    return _resolved(_model_defaults(ExperimentConfig(model=model, train=train)))


def base(name: str = "av") -> ExperimentConfig:
    """The default model sizes (R(2+1)D-18-like streams) for GPU training."""
    return _resolved(_model_defaults(ExperimentConfig(model=ModelConfig(name=name))))


# the audio-only detector's front-end, chosen by leave-one-vocoder-out on held-out speakers
# (benchmarks/lovo.md: LFCC generalized to unseen vocoders better than log-mel); the AV models keep
# the log-mel, on which the {2+1}-stream network was built and tested
AUDIO_MODEL_FRONTEND = "lfcc"


def _model_defaults(cfg: ExperimentConfig) -> ExperimentConfig:
    """Defaults that differ by model (a config file still overrides them)."""
    if cfg.model.name == "audio":
        cfg.model.audio.frontend = AUDIO_MODEL_FRONTEND
    return cfg


def _resolved(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with its model part as its model class resolves it (e.g. "av-noatt": attention
    off); an unknown model name is an error listing the valid ones."""
    from .builder import model_class

    cfg.model = model_class(cfg.model.name).resolve_config(cfg.model)
    return cfg


PRESETS = {"tiny": tiny, "base": base}


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, found {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; {cls.__name__} has {sorted(fields)}")
    kw = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            kw[name] = _build(type(current), value, f"{where}.{name}")
        elif isinstance(current, tuple):
            kw[name] = tuple(value)
        else:
            kw[name] = value
    return cls(**kw)


def from_dict(data: dict, preset: str | None = None, model: str | None = None) -> ExperimentConfig:
    """A config from a (partial) dict laid over a preset (``tiny``/``base``, default ``base``)."""
    name = model or (data.get("model") or {}).get("name") or "av"
    start = PRESETS[preset or "base"](name).to_dict()
    merged = _merge(start, data)
    merged["model"]["name"] = name
    return _resolved(_build(ExperimentConfig, merged, "config"))


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) and k != "loss_weights" else v
    return out


def load(path=None, preset: str | None = None, model: str | None = None) -> ExperimentConfig:
    """A config file (JSON or YAML) over a preset; no file: the preset itself."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Config file not found: {path}")
        text = path.read_text()
        if path.suffix in (".yml", ".yaml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        preset = preset or data.pop("preset", None)
    return from_dict(data, preset, model)

"""The training configuration shared by every vocoder objective, and how presets resolve.

A run's configuration is ``{"model": <the vocoder's config fields>, "train": TrainConfig}``:
the preset of the vocoder's objective (``tiny`` or ``base``, defined beside the objective with
its sources), then a YAML ``--config`` file with the same two sections, then the command-line
overrides (``--max-steps``, ``--batch-size``, ``--seed``). The resolved result is saved as
``config.yaml`` in the run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

PRESETS = ("tiny", "base")


@dataclass
class TrainConfig:
    """Steps, data and optimisation of one run (defaults: overridden by every preset)."""

    max_steps: int = 1000  # optimizer steps (GAN: generator steps)
    batch_size: int = 4  # segments per step
    segment_samples: int = 8192  # samples per segment at the vocoder's rate (rounded down to a hop multiple)
    silence_db: float = 20.0  # redraw segments this far below their utterance's RMS (0: keep every draw)
    lr: float = 1e-4  # generator / model learning rate
    lr_d: float = 5e-5  # discriminator learning rate (GAN vocoders)
    optimizer: str = "adam"  # "adam" or "radam" (ParallelWaveGAN)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas
    eps: float = 1e-8  # Adam epsilon
    grad_norm: float = 0.0  # clip the model's gradient norm to this (0: no clipping)
    grad_norm_d: float = 0.0  # same for the discriminator
    lr_step: int = 0  # StepLR: multiply the learning rates by lr_gamma every lr_step steps (0: constant)
    lr_gamma: float = 0.5
    disc_start: int = 0  # GAN vocoders: generator-only warm-up before the discriminator starts
    lambda_adv: float = 4.0  # GAN vocoders: weight of the adversarial loss (ParallelWaveGAN v1)
    lambda_fm: float = 10.0  # GAN vocoders: weight of feature matching (descript MelGAN lambda_feat)
    discriminator: dict = field(default_factory=dict)  # GAN vocoders: the discriminator's config fields
    validate_every: int = 200  # steps between validations (and the checkpoints written with them)
    checkpoint_every: int = 0  # steps between resume checkpoints (0: at each validation)
    n_val: int = 2  # held-out utterances (whole files) for validation
    val_seconds: float = 3.0  # validation clips are the first val_seconds of each held-out utterance
    val_sample_rate: int = 16000  # rate at which held-out clips are converted and scored (as the store)
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's default)

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if self.max_steps < 0 or self.batch_size < 1 or self.segment_samples < 1 or self.validate_every < 1:
            raise ValueError(f"Invalid training config: max_steps {self.max_steps}, batch_size {self.batch_size}, "
                             f"segment_samples {self.segment_samples}, validate_every {self.validate_every}")


@dataclass
class RunConfig:
    """What a run directory's ``config.yaml`` holds."""

    vocoder: str
    preset: str
    model: dict = field(default_factory=dict)  # the vocoder's config fields (its dataclass)
    train: TrainConfig = field(default_factory=TrainConfig)
    mel: dict = field(default_factory=dict)  # the vocoder's MelSpec fields (resolved at setup)

    def to_dict(self) -> dict:
        return {"vocoder": self.vocoder, "preset": self.preset, "model": _plain(self.model),
                "mel": _plain(self.mel), "train": _plain(dataclasses.asdict(self.train))}

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return cls(vocoder=d["vocoder"], preset=d["preset"], model=dict(d.get("model") or {}),
                   train=TrainConfig(**(d.get("train") or {})), mel=dict(d.get("mel") or {}))


def _plain(obj):
    """Tuples -> lists, recursively: YAML-safe and comparable after a round trip."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def resolve(vocoder: str, preset: str, objective, config_file: Path | None = None, **overrides) -> RunConfig:
    """The run configuration: ``objective.preset(preset)``, then ``config_file``, then ``overrides``
    (None values are ignored). Unknown keys are an error naming the file."""
    import yaml

    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    model, train = objective.preset(preset)
    if config_file is not None:
        config_file = Path(config_file)
        try:
            data = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{config_file}: cannot read it as a YAML training config: {e}") from None
        unknown = sorted(set(data) - {"model", "train"})
        if not isinstance(data, dict) or unknown:
            raise ValueError(f"{config_file}: expected sections 'model' and/or 'train', found {unknown or data!r}")
        model = {**model, **(data.get("model") or {})}
        train = {**train, **(data.get("train") or {})}
    train.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if set(train) - known:
        where = f" in {config_file}" if config_file else ""
        raise ValueError(f"Unknown training setting(s) {sorted(set(train) - known)}{where}; known: {sorted(known)}")
    return RunConfig(vocoder=vocoder, preset=preset, model=model, train=TrainConfig(**train))

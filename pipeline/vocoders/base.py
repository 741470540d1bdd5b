"""What every vocoder offers, and the copy-synthesis step built on it.

A :class:`Vocoder` turns a mel spectrogram in its own convention (:attr:`Vocoder.mel`, at its
own sample rate) into a waveform. :meth:`Vocoder.copy_synthesize` is what the convert stage
calls: real audio at any rate -> resample to the vocoder's rate -> mel -> waveform -> resample
back -> exactly the input length, for a batch of equal-length clips at once.

Neural vocoders subclass :class:`NeuralVocoder`: an ``nn.Module`` generator built from a typed
config (matching the public release's parameter names and defaults), loaded from a user's
checkpoint (``--checkpoint PATH``), never with random weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .checkpoint import CheckpointError, file_hash, fold_weight_norm, load_file, load_into, state_dict_of
from .mel import MelSpec


class Vocoder:
    name: ClassVar[str] = ""
    needs_checkpoint: ClassVar[bool] = False

    def __init__(self, mel: MelSpec, device: str = "cpu"):
        self.mel = mel
        self.device = torch.device(device)
        self.checkpoint: str | None = None
        self.checkpoint_hash: str | None = None
        # for a checkpoint written by ``avdd-data train-vocoder``: {"run": RUN_DIR, "step": N}
        self.trained: dict | None = None

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) waveform at :attr:`sample_rate` -> (B, n_mels, T) features the model takes."""
        return self.mel(wav)

    def generate(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) features -> (B, N') waveform at :attr:`sample_rate`."""
        raise NotImplementedError

    def config_dict(self) -> dict:
        """The resolved configuration, recorded with every conversion."""
        return {"mel": dataclasses.asdict(self.mel)}

    def info(self) -> dict:
        info = {"vocoder": self.name, "checkpoint": self.checkpoint, "checkpoint_hash": self.checkpoint_hash,
                "config": self.config_dict()}
        if self.trained is not None:
            info["trained"] = dict(self.trained)
        return info

    @torch.inference_mode()
    def copy_synthesize(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Re-synthesise a batch of clips (B, L) float32 at ``sample_rate`` through this
        vocoder; returns (B, L) at the same rate, the same length."""
        import torchaudio.functional as AF

        x = torch.as_tensor(np.atleast_2d(audio), dtype=torch.float32, device=self.device)
        length = x.shape[1]
        if sample_rate != self.sample_rate:
            x = AF.resample(x, sample_rate, self.sample_rate)
        y = self.generate(self.features(x)).float()
        if sample_rate != self.sample_rate:
            y = AF.resample(y, self.sample_rate, sample_rate)
        if y.shape[1] < length:
            y = torch.nn.functional.pad(y, (0, length - y.shape[1]))
        return y[:, :length].cpu().numpy().astype(np.float32)


class NeuralVocoder(Vocoder):
    """A vocoder with a trained ``nn.Module`` generator.

    Subclasses set :attr:`config_class` (a dataclass with the release's defaults and a
    ``tiny()`` classmethod), :attr:`default_mel`, implement :meth:`build` and
    :meth:`generate`, and may override :meth:`config_from_checkpoint` (to read a config
    stored with the checkpoint) and :attr:`pickle_classes` (legacy pickles, see checkpoint.py).
    """

    needs_checkpoint: ClassVar[bool] = True
    config_class: ClassVar[type] = object
    default_mel: ClassVar[MelSpec]
    pickle_classes: ClassVar[dict[str, type]] = {}

    def __init__(self, config=None, mel: MelSpec | None = None, device: str = "cpu"):
        super().__init__(mel or self.default_mel, device)
        self.config = config if config is not None else self.config_class()
        self.model = self.build(self.config).to(self.device).eval()
        self.half = False

    def build(self, config) -> torch.nn.Module:
        raise NotImplementedError

    def use_half(self, enabled: bool = True) -> "NeuralVocoder":
        """Generate in float16 (CUDA only): faster, but the rounding of float16 leaves a noise
        floor about 66 dB below the signal that float32 output has not, and a detector trained on
        such conversions may learn it as a cue. Off by default; recorded in :meth:`config_dict`."""
        if enabled and self.device.type != "cuda":
            raise ValueError(f"Half precision needs a CUDA device; {self.name} runs on {self.device}")
        self.half = enabled
        self.apply_precision()
        return self

    def apply_precision(self) -> None:
        """Cast the model to the chosen precision (``self.half``); vocoders that keep float32
        weights and cast per call override this."""
        self.model.to(dtype=torch.float16 if self.half else torch.float32)

    def config_dict(self) -> dict:
        return {**super().config_dict(), "model": dataclasses.asdict(self.config),
                "precision": "float16" if self.half else "float32"}

    @classmethod
    def config_from_checkpoint(cls, ckpt, path: Path):
        """(config, mel) for a loaded checkpoint; default: the release's defaults."""
        return cls.config_class(), cls.default_mel

    @classmethod
    def translate_state_dict(cls, sd: dict) -> dict:
        """Rename another release's state_dict keys into ours; default: unchanged."""
        return sd

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", trust_pickle: bool = False,
                        half: bool = False) -> "NeuralVocoder":
        """A checkpoint in any layout the vocoder supports (see checkpoint.py), or one avdd saved;
        a training run directory (``avdd-data train-vocoder --out``) means its best checkpoint."""
        path = resolve_run_dir(Path(path))
        ckpt = load_file(path, trust_pickle=trust_pickle, pickle_classes=cls.pickle_classes)
        if isinstance(ckpt, dict) and "avdd_config" in ckpt:  # saved by avdd (see save)
            config, mel = cls.config_class(**ckpt["avdd_config"]), MelSpec(**ckpt["avdd_mel"])
        else:
            config, mel = cls.config_from_checkpoint(ckpt, path)
        voc = cls(config, mel, device=device)
        sd = cls.translate_state_dict(state_dict_of(ckpt))
        load_into(voc.model, {k: v.to(voc.device) for k, v in sd.items()}, str(path))
        voc.checkpoint, voc.checkpoint_hash = str(path), file_hash(path)
        if isinstance(ckpt, dict) and isinstance(ckpt.get("avdd_run"), dict):
            voc.trained = dict(ckpt["avdd_run"])
        return voc.use_half(half)

    def save(self, path, run: dict | None = None) -> None:
        """Save as a plain checkpoint (weights_only-loadable): state_dict (weight norm folded,
        float32) + config + mel, and ``run`` ({"run", "step"}) for a checkpoint of a training run."""
        sd = fold_weight_norm(self.model.state_dict())
        data = {"state_dict": {k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                "avdd_config": dataclasses.asdict(self.config), "avdd_mel": dataclasses.asdict(self.mel),
                "vocoder": self.name}
        if run is not None:
            data["avdd_run"] = dict(run)
        torch.save(data, path)


BEST_CHECKPOINT = "best.pt"  # in a training run directory: the checkpoint with the lowest validation MCD


def resolve_run_dir(path: Path) -> Path:
    """``path`` itself, or for a training run directory its best checkpoint."""
    if not path.is_dir():
        return path
    best = path / BEST_CHECKPOINT
    if not best.is_file():
        raise CheckpointError(f"{path} is a directory but not a training run with a {BEST_CHECKPOINT} "
                              "(written at the first validation of avdd-data train-vocoder)")
    return best


def no_checkpoint_error(name: str) -> CheckpointError:
    return CheckpointError(
        f"Vocoder {name!r} is a neural vocoder and needs trained weights: pass --checkpoint PATH with a "
        f"checkpoint of the public release it mirrors or one avdd saved. avdd never downloads weights "
        f"and never converts with random ones."
    )

"""Loading vocoder checkpoints safely, whatever format the public releases saved them in.

- :func:`load_file` loads with ``torch.load(weights_only=True)`` (NumPy scalars, common in
  training states, admitted). A file that needs a full
  unpickler (a pickled ``nn.Module``, like NVIDIA's original WaveGlow release) is refused with
  an error that says so, unless the caller opts in with ``trust_pickle``: then a restricted
  unpickler accepts only torch's tensor machinery, plain containers, torch.nn layers and the few
  class names the caller maps to our own classes.
- :func:`state_dict_of` finds the generator's weights in the usual layouts: a bare state_dict,
  ``{"model": {"generator": ...}}`` (ParallelWaveGAN), ``{"state_dict": ...}``, ``{"model_g":
  ...}`` (seungwonpark MelGAN), ``{"model": <nn.Module>}``, with or without a ``module.`` prefix.
- :func:`fold_weight_norm` turns weight-norm pairs (``weight_g``/``weight_v``, or the newer
  ``parametrizations.weight.original0/1``) into plain weights: our models carry plain weights.
"""

from __future__ import annotations

import _compat_pickle
import hashlib
import io
import pickle
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason and what to do."""


def file_hash(path) -> str:
    """sha256 of a file (first 16 hex digits): identifies the checkpoint in conversion records."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# What a legacy pickle of a torch model may reference besides the caller's own classes: exact
# (module, name) pairs only. No prefixes and no dotted names: either reaches any attribute of an
# allowed module (e.g. ``torch.serialization.os.system``), and ``getattr`` likewise.
_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "dict"), ("builtins", "list"),
    ("builtins", "tuple"), ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch.nn.modules.conv", "Conv1d"), ("torch.nn.modules.conv", "ConvTranspose1d"),
    ("torch.nn.modules.conv", "Conv2d"), ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.container", "ModuleList"), ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.utils.weight_norm", "WeightNorm"), ("torch.nn.parameter", "Parameter"),
    ("torch", "Size"), ("torch", "device"),
    *(("torch", f"{t}Storage") for t in ("Float", "Half", "Double", "Long", "Int", "Byte", "Bool", "BFloat16")),
}


class _RestrictedUnpickler(pickle.Unpickler):
    mapping: dict[str, object] = {}

    def find_class(self, module, name):
        # Python 2 names (protocol-2 pickles write __builtin__.set), mapped as fix_imports does
        module, name = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        key = f"{module}.{name}"
        if key in self.mapping:
            return self.mapping[key]
        if "." not in name and (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {key!r} from a checkpoint")


def _restricted_pickle_module(mapping: dict[str, object]):
    """A pickle-module stand-in for ``torch.load`` whose unpickler resolves only
    :data:`_PICKLE_GLOBALS` and the ``"module.Name"`` entries of ``mapping`` (to our classes)."""
    unpickler = type("Unpickler", (_RestrictedUnpickler,), {"mapping": dict(mapping)})
    return type("avdd_restricted_pickle", (), {"Unpickler": unpickler,
                                               "load": staticmethod(lambda f, **kw: unpickler(f, **kw).load())})


def _numpy_scalar_globals() -> list:
    """NumPy's scalar constructor and dtypes: training loops often store a step counter as a
    NumPy scalar, which plain ``weights_only=True`` refuses; these build numbers, never run code.
    Pickles from NumPy 1.x name the constructor numpy.core.multiarray.scalar, 2.x numpy._core."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import scalar
    names = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
             "float16", "float32", "float64")
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            *(type(np.dtype(n)) for n in names)]


def module_tensors(module: torch.nn.Module, prefix: str = "") -> dict:
    """Parameters and buffers of an unpickled module, read from its ``_modules``/``_parameters``/
    ``_buffers`` without calling any of its methods or hooks."""
    out = {}
    for store in ("_parameters", "_buffers"):
        for name, t in (vars(module).get(store) or {}).items():
            if isinstance(t, torch.Tensor):
                out[prefix + name] = t.detach()
    for name, child in (vars(module).get("_modules") or {}).items():
        if isinstance(child, torch.nn.Module):
            out.update(module_tensors(child, f"{prefix}{name}."))
    return out


def load_file(path, trust_pickle: bool = False, pickle_classes: dict[str, object] | None = None):
    """Load a checkpoint file onto the CPU (see module docstring for the safety rules)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise CheckpointError(
                f"{path} is not a plain weights file: loading it needs a full unpickler, which can run "
                f"code stored in the file ({str(e).splitlines()[0][:200]}). If you trust its source, pass "
                "--trust-pickle: it is then read with a restricted unpickler that accepts only torch layers "
                "and the vocoder's own classes. `avdd-data resave-checkpoint NAME SRC DST --trust-pickle` then writes "
                "a plain weights file that needs no trust."
            ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {e}") from None
    module = _restricted_pickle_module(pickle_classes or {})
    try:
        with open(path, "rb") as f:
            data = f.read()
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=module)
    except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path}: cannot read it as a checkpoint: {e}") from None


def state_dict_of(ckpt, keys: tuple[str, ...] = ("generator", "model_g", "state_dict", "model")) -> dict:
    """The generator's state_dict inside a loaded checkpoint (see module docstring)."""
    obj = ckpt
    for _ in range(3):
        if isinstance(obj, torch.nn.Module):  # an unpickled module: read, never run, it
            obj = module_tensors(obj)
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return strip_prefix(dict(obj))
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in keys if k in obj), None)
        if inner is None:
            break
        obj = inner
    found = list(ckpt.keys())[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise CheckpointError(f"Cannot find generator weights in the checkpoint (found {found}); "
                          f"expected a state_dict or one of the keys {', '.join(keys)}")


def strip_prefix(sd: dict, prefix: str = "module.") -> dict:
    """Remove a DataParallel/DDP ``module.`` prefix (when every key has it)."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


_WEIGHT_NORM = (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def _weight_norm_part(key: str) -> tuple[str, str] | None:
    """("prefix.", "g" or "v") for a weight-norm tensor's key, else None."""
    for g_name, v_name in _WEIGHT_NORM:
        for name, part in ((g_name, "g"), (v_name, "v")):
            if key == name or key.endswith("." + name):
                return key[: len(key) - len(name)], part
    return None


def fold_weight_norm(sd: dict) -> dict:
    """Replace weight-norm pairs with the plain weight ``g * v / ||v||`` (norm over every
    dimension but the first, as ``torch.nn.utils.weight_norm(dim=0)``; any rank)."""
    out = {}
    pairs: dict[str, dict] = {}
    for k, v in sd.items():
        part = _weight_norm_part(k)
        if part is None:
            out[k] = v
        else:
            pairs.setdefault(part[0], {})[part[1]] = v
    for base, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            raise CheckpointError(f"Incomplete weight-norm pair for {base.rstrip('.') or 'the model'!r} in the checkpoint")
        g, v = gv["g"], gv["v"]
        norm = torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)
        out[f"{base}weight"] = g * v / norm
    return out


def load_into(model: torch.nn.Module, sd: dict, source: str) -> None:
    """Load ``sd`` into ``model`` strictly, with an error listing what does not match."""
    sd = fold_weight_norm(strip_prefix(sd))
    own = model.state_dict()
    for k in own:  # BatchNorm counters are absent from checkpoints of PyTorch < 0.4.1
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(own[k])
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[:4]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:4]})")
        if shapes:
            parts.append(f"shape mismatch {len(shapes)} (e.g. {shapes[:3]})")
        raise CheckpointError(f"{source} does not fit {type(model).__name__} with this config: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)

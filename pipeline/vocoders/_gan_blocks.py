"""What the GAN vocoders (:mod:`.melgan`, :mod:`.parallel_wavegan`) share: reading the YAML files
their public releases write, and the inference dtype per device.

Training checkpoints of these releases hold, besides the generator's weights, optimizer and
scheduler states (seungwonpark MelGAN ``utils/train.py``: ``optim_g``/``optim_d``; kan-bayashi
ParallelWaveGAN ``bin/train.py``: ``optimizer``/``scheduler``): plain containers of tensors and
numbers (and NumPy scalars), which ``checkpoint.load_file`` reads with ``weights_only=True``.
"""

from __future__ import annotations

import yaml

class _TolerantLoader(yaml.SafeLoader):
    """A safe YAML loader that reads ``!!python/...`` tagged nodes as plain data (mappings,
    lists, strings) instead of constructing objects; e.g. an ``argparse.Namespace`` dump."""


def _construct_plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_plain)


def load_yaml(text: str) -> dict:
    """All documents of a YAML text merged into one dict (later documents win), read safely.

    seungwonpark MelGAN's ``hp_str`` is a multi-document YAML (``utils/hparams.py`` merges the
    documents); ParallelWaveGAN's ``config.yml`` is a single document."""
    merged: dict = {}
    for doc in yaml.load_all(text, Loader=_TolerantLoader):
        if isinstance(doc, dict):
            merged.update(doc)
    return merged



"""ASVspoof 2019 logical access (LA) from its CM protocol files.

Protocol lines read ``SPEAKER FILE - ATTACK KEY``: ``LA_0079 LA_T_1138215 - - bonafide`` or
``LA_0079 LA_T_1004644 - A01 spoof``. Protocols are found as ``*.cm.*.txt`` under the corpus
(``ASVspoof2019_LA_cm_protocols/``); the partition in the name (train/dev/eval) gives the
split (train/val/test), and audio is ``ASVspoof2019_LA_<partition>/flac/<FILE>.flac``.
The attack id (A01-A19) is the method. Identity and group are the speaker: the LA partitions
are speaker-disjoint, so a speaker stays in one split.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import MediaError
from ..manifest import Failure, ManifestRow, RecipeResult
from . import register
from ._common import corpus_path, finish

_PARTITIONS = {"train": "train", "dev": "val", "eval": "test"}
_PROTO = re.compile(r"\.cm\.(train|dev|eval)\.(?:trn|trl)(?:\.txt)?$")


@register("asvspoof2019_la")
def prepare_asvspoof2019_la(corpus_dir, protocol=None, probe: bool = False) -> RecipeResult:
    root = corpus_path(corpus_dir)
    protocols = [Path(p) for p in protocol] if isinstance(protocol, (list, tuple)) else (
        [Path(protocol)] if protocol else sorted(p for p in root.rglob("*.txt") if _PROTO.search(p.name))
    )
    if not protocols:
        raise FileNotFoundError(f"No ASVspoof2019 LA CM protocol (*.cm.<train|dev|eval>.*.txt) found under {root}")
    audio = {p.stem: p for p in root.rglob("*.flac")}
    candidates, failures = [], []
    for proto in protocols:
        m = _PROTO.search(proto.name)
        partition = m.group(1) if m else None
        for n, line in enumerate(proto.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 5 or fields[4] not in ("bonafide", "spoof"):
                failures.append(Failure(path=f"{proto.name}:{n}", reason="invalid_row",
                                        detail=f"expected 'SPEAKER FILE - ATTACK KEY', found {line.strip()!r}"))
                continue
            speaker, name, _, attack, key = fields
            flac = audio.get(name)
            if flac is None:
                where = proto.resolve().parent.parent  # LA/ holds the protocol folder and the partitions
                err = MediaError(where / f"ASVspoof2019_LA_{partition or 'unknown'}/flac/{name}.flac", "missing")
                failures.append(Failure.from_error(err, id=name, root=root))
                continue
            spoof = key == "spoof"
            candidates.append(ManifestRow(
                id=name,
                path=flac.relative_to(root).as_posix(),
                media="audio",
                video_label=None,
                audio_label="fake" if spoof else "real",
                method=attack if spoof else None,
                group=speaker,
                identity=speaker,
                split=_PARTITIONS.get(partition),
                has_audio=True,
                extra={"partition": partition, "protocol": proto.name},
            ))
    return finish(root, candidates, failures, "audio", probe)

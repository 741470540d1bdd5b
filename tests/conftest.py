"""Shared fixtures: the real sample media (``../shared/data`` or ``$AVDD_SAMPLE_DATA``) and
small synthetic media made with ffmpeg for tests of mechanics."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def sample_data_dir() -> Path | None:
    env = os.environ.get("AVDD_SAMPLE_DATA")
    p = Path(env) if env else PROJECT.parent / "shared" / "data"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def sample_data() -> Path:
    p = sample_data_dir()
    if p is None:
        pytest.skip("real sample media not found (set AVDD_SAMPLE_DATA or provide ../shared/data)")
    return p


def torch_threads(n: int):
    """An autouse fixture running each test of a module with ``n`` torch threads. Many small ops
    on a shared 2-core machine: extra intra-op threads mostly wait on each other."""

    @pytest.fixture(autouse=True)
    def _threads():
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(n)
        yield
        torch.set_num_threads(old)

    return _threads


def ffmpeg(*args: str) -> None:
    from pipeline.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def write_unreadable_media(sample_data: Path, folder: Path) -> None:
    """Three files no decoder can use, made from the sample talking head: ``zero.mp4`` (empty),
    ``text.mp4`` (a text file) and ``truncated.mp4`` (its first 60 kB: the moov atom cut off)."""
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("hello\n")
    (folder / "truncated.mp4").write_bytes((sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4")
                                           .read_bytes()[:60000])


@pytest.fixture(scope="session")
def indexed_video(tmp_path_factory) -> Path:
    """10 s of 29.97 fps frames whose colour encodes the frame number (lossless), no audio.
    Frame n: red = (n % 32) * 8, green = (n // 32) * 32 (unique for n < 256)."""
    out = tmp_path_factory.mktemp("media") / "indexed.mp4"
    ffmpeg("-f", "lavfi", "-i",
           "color=c=black:s=64x48:r=30000/1001:d=8.5,format=rgb24,"
           "geq=r='mod(N,32)*8':g='floor(N/32)*32':b=128",
           "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", "-g", "48", str(out))
    return out


def frame_index(frames):
    """Source frame numbers of frames of :func:`indexed_video`."""
    import numpy as np

    r = frames[..., 0].reshape(len(frames), -1).mean(1)
    g = frames[..., 1].reshape(len(frames), -1).mean(1)
    return (np.round(r / 8) + 32 * np.round(g / 32)).astype(int)


@pytest.fixture(scope="session")
def late_audio_video(tmp_path_factory) -> Path:
    """6 s video (25 fps) whose AAC audio track starts 0.5 s late and holds a 1 kHz tone
    from 1.0 s to 1.2 s of the audio (1.5 s to 1.7 s of the file timeline)."""
    out = tmp_path_factory.mktemp("media") / "late_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x48:r=25:d=6", "-itsoffset", "0.5", "-f", "lavfi", "-i",
           "aevalsrc='if(between(t\\,1\\,1.2)\\,sin(2*PI*1000*t)\\,0)':s=44100:d=4",
           "-c:v", "libx264", "-c:a", "aac", "-shortest", str(out))
    return out


@pytest.fixture(scope="session")
def six_videos_store(sample_data, tmp_path_factory):
    """The six sample videos (DFDC x2, FF++ x2, talking heads x2) through their recipes, merged
    and extracted with 2 clips each (32 frames, default face pipeline). Read-only: copy it before
    changing it. Returns (store, extract summary, sample data folder)."""
    from pipeline.extract import ExtractConfig, extract
    from pipeline.manifest import merge_manifests, write_manifest
    from pipeline.recipes import prepare

    tmp = tmp_path_factory.mktemp("six")
    parts = []
    for recipe, sub, opts in [("dfdc", "dfdc", {}), ("ffpp", "ffpp", {}), ("folder", "talking", {"default_label": "real"})]:
        out = tmp / f"{recipe}.jsonl"
        write_manifest(prepare(recipe, sample_data / sub, **opts), out, recipe, sample_data / sub)
        parts.append(out)
    manifest = tmp / "all.jsonl"
    merge_manifests(parts, manifest)
    store = tmp / "six.zarr"
    summary = extract(manifest, store, config=ExtractConfig(clips_per_video=2, clips_per_audio=2), workers=0, progress=False)
    return store, summary, sample_data

"""Media access: sniffing, probing, decoding frames and audio.

Audio files that libsndfile decodes sample-exactly (PCM and lossless: wav, flac, aiff, au, w64,
rf64, caf), mono or stereo, are probed with ``soundfile.info`` and read with ``soundfile`` in
this process, resampled with soxr (``HQ``): no subprocess per file, which is what indexing and
extracting corpora of many short utterances costs most (ASVspoof2019 LA, In-the-Wild). Stereo
is mixed down as ffmpeg's ``-ac 1`` does (each channel times 1/sqrt(2)), so both paths give the
same audio to within the resamplers' difference (tested on real speech). Everything else
(containers such as mp4 and m4a, lossy codecs with encoder delay, more than two channels) goes
through the ffmpeg binary; ``AVDD_AUDIO_READER=ffmpeg`` sends every file there (for comparisons).

The ffmpeg binary is the one on ``PATH`` or, when there is none, the one shipped in the
``imageio-ffmpeg`` wheel (``AVDD_FFMPEG`` overrides both). No ``ffprobe`` is needed: probing
parses the stream summary that ``ffmpeg -i`` prints.

Timeline convention, shared by :func:`read_frames` and :func:`read_audio`: time 0 is the start
of the file's timeline as ffmpeg presents it. Audio is padded with silence (or trimmed) so that
sample 0 is time 0; video frame ``i`` of a read starting at grid frame ``k`` is the source frame nearest to
``(k + i) / fps``. A clip's audio therefore starts at sample ``round(k * sr / fps)``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MediaError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"}
AUDIO_SUFFIXES = {".wav", ".flac", ".m4a", ".mp3", ".ogg", ".opus", ".aac"}
MEDIA_SUFFIXES = VIDEO_SUFFIXES | AUDIO_SUFFIXES
SEEK_MARGIN = 2  # grid frames decoded before a clip and dropped (see read_frames)
# Read in-process by libsndfile: formats it decodes sample-exactly from time 0.
SNDFILE_SUFFIXES = {".wav", ".flac", ".aif", ".aiff", ".au", ".w64", ".rf64", ".caf"}
STEREO_TO_MONO = np.float32(np.sqrt(0.5))  # ffmpeg's downmix coefficient for -ac 1 (FL, FR -> FC)


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$AVDD_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    env = os.environ.get("AVDD_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def sniff_kind(path) -> str | None:
    """Kind of media a file holds judging by its first bytes: ``"video"``, ``"audio"`` or None.

    ``"video"`` means a container that normally carries video (it may still lack a video
    stream, which :func:`probe` finds out). Raises :class:`MediaError` ("missing" or
    "unreadable") when the file cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "missing")
    if not path.is_file():
        raise MediaError(path, "wrong_kind", "not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise MediaError(path, "unreadable", str(e)) from e
    if len(head) < 12:
        return None
    if head[:4] == b"RIFF":
        return {b"WAVE": "audio", b"AVI ": "video"}.get(head[8:12])
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "audio" if brand in (b"M4A ", b"M4B ", b"F4A ") else "video"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # old QuickTime without ftyp
        return "video"
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:3] == b"FLV":
        return "video"
    if head[0] == 0x47 and len(head) > 0 and _looks_like_mpegts(path):
        return "video"
    if head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3":
        return "audio"
    if head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG audio / ADTS AAC frame sync
        return "audio"
    if head[:4] == b"\x00\x00\x01\xba":  # MPEG program stream
        return "video"
    return None


def _looks_like_mpegts(path: Path) -> bool:
    with open(path, "rb") as f:
        data = f.read(188 * 3 + 1)
    return len(data) > 376 and data[188] == 0x47 and data[376] == 0x47


@dataclass(frozen=True)
class VideoStream:
    width: int  # after rotation, as frames are decoded
    height: int
    fps: float
    rotation: int = 0


@dataclass(frozen=True)
class AudioStream:
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a media file."""

    path: str
    duration: float | None
    video: VideoStream | None
    audio: AudioStream | None

    def to_dict(self) -> dict:
        return {
            "duration": self.duration,
            "width": self.video.width if self.video else None,
            "height": self.video.height if self.video else None,
            "fps": self.video.fps if self.video else None,
            "audio_sample_rate": self.audio.sample_rate if self.audio else None,
            "audio_channels": self.audio.channels if self.audio else None,
        }


def recorded_info(path, extra: dict) -> MediaInfo | None:
    """The :class:`MediaInfo` a manifest recorded when it probed ``path`` (``extra`` of its row,
    see ``recipes._common.probe_rows``), so that extract need not probe again; None when the row
    has none, or when the file's size is no longer the recorded one (then it is probed again)."""
    size, duration = extra.get("bytes"), extra.get("duration")
    if size is None or duration is None:
        return None
    try:
        if Path(path).stat().st_size != size:
            return None
    except OSError:
        return None
    video = (VideoStream(width=int(extra["width"]), height=int(extra["height"]), fps=float(extra["fps"]))
             if extra.get("width") and extra.get("height") and extra.get("fps") else None)
    audio = (AudioStream(sample_rate=int(extra["audio_sample_rate"]), channels=int(extra.get("audio_channels") or 1))
             if extra.get("audio_sample_rate") else None)
    if video is None and audio is None:
        return None
    return MediaInfo(path=str(path), duration=float(duration), video=video, audio=audio)


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio): (.*)$")
_SIZE = re.compile(r"(?:^|[ ,])(\d{2,5})x(\d{2,5})(?:[ ,]|$)")
_RATE = re.compile(r"(\d+(?:\.\d+)?)(k?) (fps|tbr)")
_HZ = re.compile(r"(\d+) Hz")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees|rotate\s*:\s*(-?\d+)")
_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6, "7.1": 8}


def probe(path) -> MediaInfo:
    """Streams and duration of a media file, parsed from ``ffmpeg -i``.

    Raises :class:`MediaError` when the file is missing, unreadable or not media ffmpeg knows.
    """
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "missing")
    info = _sndfile_info(path)
    if info is not None:
        return info
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    try:
        return parse_probe(str(path), proc.stderr)
    except MediaError as e:
        if e.reason == "wrong_kind" and sniff_kind(path) is not None:
            # a known container ffmpeg cannot open: a broken file rather than a wrong kind
            raise MediaError(path, "decode_error", e.detail) from None
        raise


def in_process_audio(path) -> bool:
    """Whether ``path`` is read (and probed) by libsndfile in this process, not by ffmpeg, judging
    by its name (a file libsndfile then refuses still falls back to ffmpeg)."""
    return Path(path).suffix.lower() in SNDFILE_SUFFIXES and os.environ.get("AVDD_AUDIO_READER") != "ffmpeg"


def _soundfile(path: Path):
    """``soundfile.info`` of a file read in-process, or None (another format, more than two
    channels, empty, or a file libsndfile refuses: those take the ffmpeg path, whose errors
    name the reason)."""
    if not in_process_audio(path):
        return None
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError):
        return None
    return info if info.frames > 0 and 1 <= info.channels <= 2 and info.samplerate > 0 else None


def _sndfile_info(path: Path) -> MediaInfo | None:
    info = _soundfile(path)
    if info is None:
        return None
    # the duration as ffmpeg reports it (rounded to 10 ms), so that both probes agree
    us = info.frames * 1_000_000 // info.samplerate
    duration = ((us + 5000) // 10000) / 100
    return MediaInfo(path=str(path), duration=duration, video=None,
                     audio=AudioStream(sample_rate=info.samplerate, channels=info.channels))


def parse_probe(path: str, text: str) -> MediaInfo:
    """Parse the stream summary ffmpeg prints to stderr for ``ffmpeg -i PATH``."""
    if "Permission denied" in text:
        raise MediaError(path, "unreadable", "permission denied")
    if "Input #0" not in text:
        last = [line for line in text.strip().splitlines() if line.strip()]
        raise MediaError(path, "wrong_kind", last[-1].strip() if last else "ffmpeg found no streams")
    duration = None
    m = _DURATION.search(text)
    if m:
        h, mi, s = m.groups()
        duration = int(h) * 3600 + int(mi) * 60 + float(s)
    video = audio = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        sm = _STREAM.match(line)
        if not sm:
            continue
        kind, desc = sm.groups()
        if kind == "Video" and video is None and "attached pic" not in desc:
            video = _parse_video(desc, lines[i + 1 : i + 12])
        elif kind == "Audio" and audio is None:
            audio = _parse_audio(desc)
    if video is None and audio is None:
        raise MediaError(path, "wrong_kind", "no audio or video stream")
    return MediaInfo(path=path, duration=duration, video=video, audio=audio)


def _parse_video(desc: str, following: list[str]) -> VideoStream | None:
    size = _SIZE.search(desc)
    if not size:
        return None
    w, h = int(size.group(1)), int(size.group(2))
    rates = {unit: float(v) * (1000 if k else 1) for v, k, unit in _RATE.findall(desc)}
    fps = rates.get("fps") or rates.get("tbr") or 0.0
    rotation = 0
    for line in following:
        if _STREAM.match(line):
            break
        r = _ROTATION.search(line)
        if r:
            rotation = int(round(float(r.group(1) or r.group(2)))) % 360
            break
    if rotation in (90, 270):
        w, h = h, w
    return VideoStream(width=w, height=h, fps=fps, rotation=rotation)


def _parse_audio(desc: str) -> AudioStream | None:
    hz = _HZ.search(desc)
    if not hz:
        return None
    channels = 0
    after = desc[hz.end() :].split(",")
    if len(after) > 1:
        label = after[1].strip().split("(")[0].strip()
        if label in _CHANNELS:
            channels = _CHANNELS[label]
        elif label.endswith("channels"):
            channels = int(label.split()[0])
    return AudioStream(sample_rate=int(hz.group(1)), channels=channels)


def _run(cmd: list[str], path, what: str, missing_stream: str | None = None) -> bytes:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        text = proc.stderr.decode(errors="replace")
        if missing_stream and "matches no streams" in text:
            raise MediaError(path, missing_stream)
        err = text.strip().splitlines()
        detail = err[-1] if err else f"ffmpeg exited with {proc.returncode}"
        raise MediaError(path, "decode_error", f"{what}: {detail}")
    return proc.stdout


def read_audio(path, sample_rate: int = 16000, threads: int = 1) -> np.ndarray:
    """Decode the first audio track of ``path`` as float32 mono at ``sample_rate``.

    Sample 0 is time 0 of the file's timeline (a late-starting track is padded with silence).
    Raises :class:`MediaError` "no_audio" when the file has no audio track.
    """
    if _soundfile(Path(path)) is not None:
        return _read_sndfile(Path(path), sample_rate)
    cmd = [
        ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", str(threads), "-i", str(path),
        "-map", "0:a:0", "-vn", "-af", "aresample=async=1:first_pts=0",
        "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-",
    ]  # fmt: skip
    raw = _run(cmd, path, "audio", missing_stream="no_audio")
    return np.frombuffer(raw, dtype="<f4").copy()


def _read_sndfile(path: Path, sample_rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise MediaError(path, "decode_error", f"audio: {e}") from e
    mono = data[:, 0] if data.shape[1] == 1 else (data[:, 0] + data[:, 1]) * STEREO_TO_MONO
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def decoded_size(video: VideoStream, max_short_side: int = 0) -> tuple[int, int]:
    """(width, height) frames are decoded at: the stream's size, or scaled down (even
    dimensions, aspect kept) so that the short side is at most ``max_short_side``."""
    w, h = video.width, video.height
    if max_short_side and min(w, h) > max_short_side:
        s = max_short_side / min(w, h)
        w, h = 2 * round(w * s / 2), 2 * round(h * s / 2)
    return w, h


def iter_clips(
    path,
    starts: list[int],
    n_frames: int,
    fps: float,
    size: tuple[int, int],
    threads: int = 1,
    seek_gap: int = 750,
):
    """Decode clips of ``n_frames`` RGB frames on the grid ``t = (start + i) / fps``.

    Yields ``(start, frames)`` for each start in ascending order, frames uint8
    ``(n, height, width, 3)`` with ``size = (width, height)`` (see :func:`decoded_size`);
    fewer than ``n_frames`` when the video ends first. Frame ``i`` is the source frame nearest
    to ``(start + i) / fps``: ffmpeg's fps filter samples the timeline on that grid and a
    select filter keeps the clips' frames, so only those are converted to RGB and piped.
    Clips less than ``seek_gap`` grid frames apart share one ffmpeg process that decodes
    straight through; a larger gap starts a new process with an input seek. A seek lands
    ``SEEK_MARGIN`` grid frames early, so that a source frame just before the seek point is
    still a candidate for the clip's first frame. When the decoder reports errors after a
    seek (a damaged keyframe decodes to grey or green frames), the clips are decoded again
    from the start of the file.
    """
    starts = sorted(starts)
    runs: list[list[int]] = []
    for s in starts:
        if runs and s - (runs[-1][-1] + n_frames) < seek_gap:
            runs[-1].append(s)
        else:
            runs.append([s])
    for run in runs:
        yield from _decode_run(path, run, n_frames, fps, size, threads)


def _decode_run(path, starts, n_frames, fps, size, threads, allow_seek: bool = True):
    width, height = size
    seek = max(0, starts[0] - SEEK_MARGIN) if allow_seek else 0
    select = "+".join(f"between(n\\,{s - seek}\\,{s - seek + n_frames - 1})" for s in starts)
    vf = f"fps={fps}:start_time=0,select='{select}',scale={width}:{height}:flags=area"
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-threads", str(threads)]
    if seek > 0:
        cmd += ["-ss", f"{seek / fps:.6f}"]
    cmd += [
        "-i", str(path), "-map", "0:v:0", "-an", "-vf", vf, "-fps_mode", "passthrough",
        "-frames:v", str(n_frames * len(starts)), "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        fallback = None
        try:
            for i, s in enumerate(starts):
                frames = np.empty((n_frames, height, width, 3), np.uint8)
                got = _read_into(proc.stdout, frames)
                if seek > 0 and _decoder_errors(err):
                    # Decoding from the seek point went wrong (e.g. a damaged keyframe gives
                    # grey/green frames): decode these clips again from the start of the file.
                    fallback = starts[i:]
                    proc.kill()
                    break
                yield s, frames[:got]
                if got < n_frames:
                    break
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if fallback:
            yield from _decode_run(path, fallback, n_frames, fps, size, threads, allow_seek=False)
            return
        if rc not in (0, -13):  # -13: SIGPIPE after we stopped reading early
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            raise MediaError(path, "decode_error", lines[-1] if lines else f"ffmpeg exited with {rc}")


def _decoder_errors(err) -> bool:
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.seek(0, 2)
    return "error while decoding" in text or "unavailable for requested" in text


def _read_into(stream, frames: np.ndarray) -> int:
    """Fill ``frames`` from a raw RGB byte stream; returns the number of whole frames read."""
    view = memoryview(frames.reshape(-1))
    frame_bytes = frames[0].nbytes
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled // frame_bytes


def read_frames(path, start: int, n_frames: int, fps: float, size: tuple[int, int], threads: int = 1) -> np.ndarray:
    """One clip from :func:`iter_clips`: ``n_frames`` frames from grid frame ``start``."""
    return next(iter_clips(path, [start], n_frames, fps, size, threads))[1]

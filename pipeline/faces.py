"""Face detection, tracking and cropping for one clip of frames.

The detector is facenet-pytorch's MTCNN, run in two passes. The coarse pass runs on frames
downscaled to a small fixed size, on every ``detect_every``-th frame: it finds the faces, which
are linked into tracks by box overlap, and the main face is chosen per clip (consistently across
the clips of a video). The local pass runs on a small window around the main face, resized so
that the face has the same size in pixels whatever the video's resolution, on every
``refine_every``-th frame: it locates the face as precisely as a detector run on the full
frame. Boxes and landmarks are interpolated over the frames in between and smoothed over time,
and fixed-size square face and mouth crops are cut from the decoded frames.

Coordinates are in pixels of the full-resolution frame. Landmarks follow MTCNN's order:
left eye, right eye, nose, left mouth corner, right mouth corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter1d


@dataclass(frozen=True)
class FaceConfig:
    detect_short_side: int = 360  # coarse pass: frames downscaled to this short side (never up)
    detect_every: int = 16  # coarse pass on every k-th frame of a clip (and its last): finds faces
    min_face_size: int = 20  # coarse pass: MTCNN minimum face size, in pixels of the downscaled frame
    refine_every: int = 2  # local pass on every k-th frame (and the last): locates the main face
    local_context: float = 2.5  # local pass: square window of this many face sizes around the face
    local_size: int = 160  # local pass: the window is resized to this many pixels (face ~64 px)
    local_min_face: int = 40  # local pass: MTCNN minimum face size in window pixels
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN P/R/O-net thresholds
    scale_factor: float = 0.709  # MTCNN image-pyramid factor
    min_confidence: float = 0.9  # detections below this are ignored
    batch_size: int = 16  # frames per detector call
    track_iou: float = 0.3  # a detection continues a track when their boxes overlap this much
    min_detected_fraction: float = 0.5  # of the detection frames must show the main face, else "no_face"
    smooth_sigma: float = 1.5  # Gaussian sigma (frames) for box centre, size and mouth position
    face_margin: float = 1.3  # face crop side = face_margin * max(box width, box height)
    face_size: int = 128  # face crop side in pixels (detectors train on random 112-px crops of it)
    mouth_scale: float = 0.5  # mouth crop side relative to max(box width, box height)
    mouth_size: int = 96  # mouth crop side in pixels (lip models use 88-px crops of 96)
    device: str = "cpu"


_DETECTORS: dict[tuple, object] = {}
LOADS = {"count": 0}  # detector loads in this process (each worker loads once)
# Torch intra-op threads for every MTCNN call. MTCNN's float results depend on the thread
# count (1 vs 2 threads: boxes differ by ~0.01 px), and its cascade thresholds can turn that
# noise into another detection, hence another crop. Pinning it makes a store the same bytes
# whatever the workers, their placement, --threads and what the calling process set before.
DETECT_THREADS = 1


def get_detector(cfg: FaceConfig):
    """The MTCNN for ``cfg``, loaded once per process (each Dask worker keeps its own)."""
    key = (cfg.device, cfg.min_face_size, tuple(cfg.thresholds), cfg.scale_factor)
    if key not in _DETECTORS:
        import torch
        from facenet_pytorch import MTCNN

        from .cluster import worker_device

        LOADS["count"] += 1
        net = MTCNN(
            keep_all=True,
            min_face_size=cfg.min_face_size,
            thresholds=list(cfg.thresholds),
            factor=cfg.scale_factor,
            post_process=False,
            select_largest=False,
            device=worker_device(cfg.device),
        ).eval()
        # Channels-last weights make the convolutions' outputs channels-last, where torch's CPU
        # max-pooling (half of P-Net's time in NCHW) is about 2.6x faster: detection on the 1080p
        # DFDC samples takes 1.8x less time, boxes within 0.01 px (benchmarks/RESULTS.md).
        for stage in (net.pnet, net.rnet, net.onet):
            stage.to(memory_format=torch.channels_last)
        _DETECTORS[key] = net
    return _DETECTORS[key]


@dataclass
class Detections:
    """Faces found in one frame: boxes (k, 4), probs (k,), landmarks (k, 5, 2)."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


def downscale(frames: np.ndarray, short_side: int) -> tuple[np.ndarray, float]:
    """Resize frames (n, H, W, 3) so that their short side is ``short_side``; never upscales.
    Returns the frames and the factor that maps downscaled coordinates back to full size."""
    h, w = frames.shape[1:3]
    scale = min(1.0, short_side / min(h, w))
    if scale == 1.0:
        return frames, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR, reducing_gap=2.0)) for f in frames])
    return small, w / size[0]


def _mtcnn(images: np.ndarray, min_face: float, cfg: FaceConfig) -> list[Detections]:
    """MTCNN on same-sized images (n, h, w, 3) in batches; detections in image pixels,
    those under ``min_confidence`` dropped."""
    import torch
    from facenet_pytorch.models.utils.detect_face import detect_face

    from .cluster import torch_threads

    net = get_detector(cfg)
    out: list[Detections] = []
    with torch.inference_mode(), torch_threads(DETECT_THREADS):
        for i in range(0, len(images), cfg.batch_size):
            batch = np.ascontiguousarray(images[i : i + cfg.batch_size])
            boxes, points = detect_face(batch, min_face, net.pnet, net.rnet, net.onet, net.thresholds,
                                        net.factor, net.device)
            for b, p in zip(boxes, points):
                b, p = np.asarray(b, np.float32), np.asarray(p, np.float32)
                if b.size == 0:
                    out.append(Detections.empty())
                    continue
                keep = b[:, 4] >= cfg.min_confidence
                out.append(Detections(b[keep, :4], b[keep, 4], p[keep].reshape(-1, 5, 2)))
    return out


def detect(frames: np.ndarray, cfg: FaceConfig) -> list[Detections]:
    """Coarse pass: all faces in frames (n, H, W, 3) uint8, detected on frames downscaled to
    ``detect_short_side``; boxes and landmarks in frame pixels."""
    if len(frames) == 0:
        return []
    small, back = downscale(frames, cfg.detect_short_side)
    return [Detections(d.boxes * back, d.probs, d.landmarks * back) for d in _mtcnn(small, cfg.min_face_size, cfg)]


def detect_local(frames: np.ndarray, boxes: np.ndarray, cfg: FaceConfig) -> list[Detections]:
    """Local pass: faces in a square window of ``local_context`` face sizes around each box,
    resized to ``local_size`` pixels so that every face is seen at about the same scale
    (``local_size / local_context`` px) whatever the video's resolution. This recovers the
    accuracy of detecting on the full-resolution frame at a fraction of its cost."""
    if len(frames) == 0:
        return []
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = cfg.local_context * (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
    windows = np.stack([crop_square(f, c[0], c[1], s, cfg.local_size) for f, c, s in zip(frames, centre, side)])
    out = []
    for d, c, s in zip(_mtcnn(windows, cfg.local_min_face, cfg), centre, side):
        k = s / cfg.local_size  # window pixels -> frame pixels
        origin = c - s / 2
        out.append(Detections(d.boxes * k + np.tile(origin, 2), d.probs, d.landmarks * k + origin))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over detection frames: index -> (box, prob, landmarks)."""

    points: dict[int, tuple[np.ndarray, float, np.ndarray]] = field(default_factory=dict)

    @property
    def last(self) -> np.ndarray:
        return self.points[max(self.points)][0]

    @property
    def score(self) -> float:  # persistent, confident and large faces win
        return float(sum(p * np.sqrt(max(1.0, (b[2] - b[0]) * (b[3] - b[1]))) for b, p, _ in self.points.values()))

    def mean_box(self) -> np.ndarray:
        return np.mean([b for b, _, _ in self.points.values()], axis=0)


def build_tracks(dets: list[Detections], min_iou: float) -> list[Track]:
    """Greedy linking of detections over consecutive detection frames by box overlap."""
    tracks: list[Track] = []
    for t, d in enumerate(dets):
        taken: set[int] = set()
        for k in np.argsort(-d.probs):
            box = d.boxes[k]
            best, best_iou = None, min_iou
            for n, tr in enumerate(tracks):
                if n in taken or t in tr.points:
                    continue
                o = iou(box, tr.last)
                if o >= best_iou:
                    best, best_iou = n, o
            if best is None:
                tracks.append(Track())
                best = len(tracks) - 1
            taken.add(best)
            tracks[best].points[t] = (box, float(d.probs[k]), d.landmarks[k])
    return tracks


def choose_track(tracks: list[Track], anchor: np.ndarray | None) -> Track | None:
    """The main face of a clip: the highest-scoring track, unless another track of at least
    half its score continues the previous clip's main face (``anchor`` box) better."""
    if not tracks:
        return None
    best = max(tracks, key=lambda t: t.score)
    if anchor is None:
        return best
    close = [t for t in tracks if t.score >= 0.5 * best.score]
    overlap = [(iou(t.mean_box(), anchor), t) for t in close]
    o, t = max(overlap, key=lambda x: x[0])
    return t if o > 0 else best


@dataclass
class ClipFaces:
    """The main face over every frame of a clip (full-resolution pixel coordinates)."""

    boxes: np.ndarray  # (F, 4) smoothed face box
    landmarks: np.ndarray  # (F, 5, 2) smoothed landmarks
    confidence: np.ndarray  # (F,) detector probability where detected, NaN where interpolated
    n_faces: int  # face tracks seen in the clip


def track_clip(frames: np.ndarray, cfg: FaceConfig, anchor: np.ndarray | None = None) -> ClipFaces | None:
    """The main face over a clip (F, H, W, 3): the coarse pass finds and tracks faces on every
    ``detect_every``-th frame and picks the main one; the local pass locates it on every
    ``refine_every``-th frame; boxes and landmarks are interpolated between and smoothed.
    None when the main face is on fewer than ``min_detected_fraction`` of the coarse frames."""
    n = len(frames)
    coarse_idx = sorted(set(range(0, n, cfg.detect_every)) | {n - 1})
    tracks = build_tracks(detect(frames[coarse_idx], cfg), cfg.track_iou)
    main = choose_track(tracks, anchor)
    if main is None or len(main.points) < cfg.min_detected_fraction * len(coarse_idx):
        return None
    t_all = np.arange(n, dtype=np.float64)
    known = {coarse_idx[i]: main.points[i] for i in main.points}
    guess = _interp(t_all, np.array(sorted(known), np.float64), np.stack([known[t][0] for t in sorted(known)]))
    local_idx = sorted(set(range(0, n, cfg.refine_every)) | {n - 1})
    fine = {}
    for t, d in zip(local_idx, detect_local(frames[local_idx], guess[local_idx], cfg)):
        overlaps = [iou(b, guess[t]) for b in d.boxes]
        if overlaps and max(overlaps) >= cfg.track_iou:
            k = int(np.argmax(overlaps))
            fine[t] = (d.boxes[k], float(d.probs[k]), d.landmarks[k])
    # the local fits are the precise ones; coarse points only fill in where they mostly failed
    known = fine if len(fine) >= cfg.min_detected_fraction * len(local_idx) else {**known, **fine}
    t_known = np.array(sorted(known), dtype=np.float64)
    boxes = _interp(t_all, t_known, np.stack([known[t][0] for t in sorted(known)]))
    lms = _interp(t_all, t_known, np.stack([known[t][2].reshape(10) for t in sorted(known)])).reshape(n, 5, 2)
    conf = np.full(n, np.nan, np.float32)
    for t, (_, p, _) in known.items():
        conf[t] = p
    return ClipFaces(_smooth_boxes(boxes, cfg.smooth_sigma), _smooth(lms, cfg.smooth_sigma), conf, len(tracks))


def _interp(t_all: np.ndarray, t_known: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(t_all, t_known, values[:, j]) for j in range(values.shape[1])], axis=1)


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter1d(x, sigma, axis=0, mode="nearest") if sigma > 0 and len(x) > 1 else x


def _smooth_boxes(boxes: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth box centre and size (not corners) so that the crop neither jitters nor breathes."""
    c = _smooth((boxes[:, :2] + boxes[:, 2:]) / 2, sigma)
    wh = _smooth(boxes[:, 2:] - boxes[:, :2], sigma)
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, out: int) -> np.ndarray:
    """A square of ``side`` pixels centred at (cx, cy), resized to ``out`` x ``out``;
    parts outside the frame are black."""
    h, w = frame.shape[:2]
    x0, y0 = cx - side / 2, cy - side / 2
    ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
    ix1, iy1 = int(np.ceil(x0 + side)), int(np.ceil(y0 + side))
    canvas = np.zeros((iy1 - iy0, ix1 - ix0, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(ix0, 0), max(iy0, 0), min(ix1, w), min(iy1, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - iy0 : sy1 - iy0, sx0 - ix0 : sx1 - ix0] = frame[sy0:sy1, sx0:sx1]
    # clamp: float rounding can put the far edge a hair past the canvas
    box = (x0 - ix0, y0 - iy0, min(x0 - ix0 + side, ix1 - ix0), min(y0 - iy0 + side, iy1 - iy0))
    return np.asarray(Image.fromarray(canvas).resize((out, out), Image.BILINEAR, box=box, reducing_gap=2.0))


def crop_clip(frames: np.ndarray, faces: ClipFaces, cfg: FaceConfig) -> tuple[np.ndarray, np.ndarray]:
    """Face crops (F, face_size, face_size, 3) and mouth crops (F, mouth_size, mouth_size, 3)."""
    face = np.empty((len(frames), cfg.face_size, cfg.face_size, 3), np.uint8)
    mouth = np.empty((len(frames), cfg.mouth_size, cfg.mouth_size, 3), np.uint8)
    for i, frame in enumerate(frames):
        b = faces.boxes[i]
        side = max(b[2] - b[0], b[3] - b[1])
        face[i] = crop_square(frame, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, cfg.face_margin * side, cfg.face_size)
        mx, my = faces.landmarks[i, 3:5].mean(axis=0)
        mouth[i] = crop_square(frame, mx, my, cfg.mouth_scale * side, cfg.mouth_size)
    return face, mouth

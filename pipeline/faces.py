"""Face detection, tracking and cropping for one clip of frames.

The detector is facenet-pytorch's MTCNN, run in batches on downscaled frames and only on every
``detect_every``-th frame; faces are linked into tracks by box overlap, the main face is
chosen per clip (consistently across the clips of a video), its box and mouth position are
interpolated over the frames in between and smoothed over time, and fixed-size square face
and mouth crops are cut from the full-resolution frames.

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
    detect_short_side: int = 360  # frames are downscaled to this short side for detection (never up)
    detect_every: int = 2  # detect on every k-th frame of a clip (and its last); interpolate between
    min_face_size: int = 20  # MTCNN minimum face size, in pixels of the downscaled frame
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


def get_detector(cfg: FaceConfig):
    """The MTCNN for ``cfg``, loaded once per process (each Dask worker keeps its own)."""
    key = (cfg.device, cfg.min_face_size, tuple(cfg.thresholds), cfg.scale_factor)
    if key not in _DETECTORS:
        from facenet_pytorch import MTCNN

        LOADS["count"] += 1
        _DETECTORS[key] = MTCNN(
            keep_all=True,
            min_face_size=cfg.min_face_size,
            thresholds=list(cfg.thresholds),
            factor=cfg.scale_factor,
            post_process=False,
            select_largest=False,
            device=cfg.device,
        ).eval()
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


def detect(frames: np.ndarray, cfg: FaceConfig) -> list[Detections]:
    """Detect faces in full-resolution frames (n, H, W, 3) uint8: downscale, run MTCNN in
    batches, map boxes back to full resolution and drop detections under ``min_confidence``."""
    import torch
    from facenet_pytorch.models.utils.detect_face import detect_face

    if len(frames) == 0:
        return []
    small, back = downscale(frames, cfg.detect_short_side)
    net = get_detector(cfg)
    out: list[Detections] = []
    with torch.inference_mode():
        for i in range(0, len(small), cfg.batch_size):
            batch = np.ascontiguousarray(small[i : i + cfg.batch_size])
            boxes, points = detect_face(
                batch, net.min_face_size, net.pnet, net.rnet, net.onet, net.thresholds, net.factor, net.device
            )
            for b, p in zip(boxes, points):
                b, p = np.asarray(b, np.float32), np.asarray(p, np.float32)
                if b.size == 0:
                    out.append(Detections.empty())
                    continue
                keep = b[:, 4] >= cfg.min_confidence
                out.append(Detections(b[keep, :4] * back, b[keep, 4], p[keep].reshape(-1, 5, 2) * back))
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
    """Detect, track and smooth the main face over a clip (F, H, W, 3). None when the main
    face is found on fewer than ``min_detected_fraction`` of the detection frames."""
    n = len(frames)
    det_idx = sorted(set(range(0, n, cfg.detect_every)) | {n - 1})
    dets = detect(frames[det_idx], cfg)
    tracks = build_tracks(dets, cfg.track_iou)
    main = choose_track(tracks, anchor)
    if main is None or len(main.points) < cfg.min_detected_fraction * len(det_idx):
        return None
    t_known = np.array([det_idx[i] for i in sorted(main.points)], dtype=np.float64)
    boxes = np.stack([main.points[i][0] for i in sorted(main.points)])
    lms = np.stack([main.points[i][2] for i in sorted(main.points)]).reshape(len(t_known), 10)
    t_all = np.arange(n, dtype=np.float64)
    boxes = _interp(t_all, t_known, boxes)
    lms = _interp(t_all, t_known, lms).reshape(n, 5, 2)
    conf = np.full(n, np.nan, np.float32)
    for i in sorted(main.points):
        conf[det_idx[i]] = main.points[i][1]
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
    box = (x0 - ix0, y0 - iy0, x0 - ix0 + side, y0 - iy0 + side)
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

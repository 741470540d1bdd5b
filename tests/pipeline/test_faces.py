import numpy as np
from PIL import Image

from pipeline.faces import (
    Detections, FaceConfig, build_tracks, choose_track, crop_clip, crop_square, detect, iou, track_clip,
)
from pipeline.media import probe, read_frames


def load(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_downscaled_detection_agrees_with_full_resolution(sample_data):
    img = load(sample_data / "faces/insightface_t1_group.png")  # 1280x886, six people
    full = detect(img[None], FaceConfig(detect_short_side=10_000))[0]
    small = detect(img[None], FaceConfig(detect_short_side=360))[0]
    assert len(full.boxes) == len(small.boxes) == 6
    for box in full.boxes:  # every face found at full size is found downscaled, same place
        assert max(iou(box, b) for b in small.boxes) > 0.8
    for lm, box in zip(small.landmarks, small.boxes):
        assert (lm[:, 0] > box[0] - 5).all() and (lm[:, 0] < box[2] + 5).all()
        assert lm[3:, 1].mean() > lm[:2, 1].mean()  # mouth corners below the eyes


def _pan(img, n, step):
    """A clip made by sliding a window over a still: real faces that move."""
    h, w = img.shape[:2]
    return np.stack([img[:, i * step : w - (n - i) * step] for i in range(n)])


def test_tracks_follow_moving_faces_and_main_face_is_consistent(sample_data):
    img = load(sample_data / "faces/insightface_t1_group.png")
    clip = _pan(img, 6, 8)
    dets = detect(clip, FaceConfig())
    tracks = build_tracks(dets, 0.3)
    assert len(tracks) == 6 and all(len(t.points) == 6 for t in tracks)
    best = choose_track(tracks, None)
    assert best.score == max(t.score for t in tracks)
    # with the previous clip's main face as anchor, a comparable face that continues it wins
    runner_up = sorted(tracks, key=lambda t: t.score)[-2]
    assert runner_up.score >= 0.5 * best.score  # similar-sized faces in this photo
    assert choose_track(tracks, runner_up.mean_box()) is runner_up


def test_choose_track_ignores_a_small_face_at_the_anchor():
    big = Detections(np.array([[0, 0, 200, 200]], np.float32), np.array([0.99], np.float32), np.zeros((1, 5, 2), np.float32))
    tiny = Detections(np.array([[300, 0, 320, 20]], np.float32), np.array([0.99], np.float32), np.zeros((1, 5, 2), np.float32))
    both = [Detections(np.concatenate([big.boxes, tiny.boxes]), np.concatenate([big.probs, tiny.probs]),
                       np.concatenate([big.landmarks, tiny.landmarks]))] * 3
    tracks = build_tracks(both, 0.3)
    assert len(tracks) == 2
    chosen = choose_track(tracks, anchor=np.array([300, 0, 320, 20], np.float32))
    assert chosen.mean_box()[2] == 200  # the tiny face scores far below half: the big face stays


def test_crop_square_pads_outside_the_frame():
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_square(frame, cx=0, cy=50, side=50, out=50)
    assert crop.shape == (50, 50, 3)
    assert crop[:, :20].max() == 0 and crop[:, 30:].min() == 200  # left half outside: black


def test_track_clip_on_a_real_talking_head(sample_data):
    path = sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4"
    info = probe(path)
    frames = read_frames(path, 25, 16, 25, (info.video.width, info.video.height))
    cfg = FaceConfig(detect_every=8, refine_every=3)
    faces = track_clip(frames, cfg)
    assert faces is not None and faces.boxes.shape == (16, 4) and faces.n_faces == 1
    detected = ~np.isnan(faces.confidence)
    # the local pass (every 3rd frame and the last) gives the face's place; the coarse pass
    # (frames 0, 8, 15) only finds it
    assert list(np.flatnonzero(detected)) == [0, 3, 6, 9, 12, 15]
    assert (faces.confidence[detected] > 0.9).all()
    # the smoothed box moves little from frame to frame (no jitter)
    centre = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    assert np.abs(np.diff(centre, axis=0)).max() < 0.05 * (faces.boxes[0, 2] - faces.boxes[0, 0])
    face, mouth = crop_clip(frames, faces, cfg)
    assert face.shape == (16, 128, 128, 3) and mouth.shape == (16, 96, 96, 3)
    # mouth centre lies in the lower half of the face box, between the box's sides
    m = faces.landmarks[:, 3:5].mean(axis=1)
    b = faces.boxes
    assert ((m[:, 1] > (b[:, 1] + b[:, 3]) / 2) & (m[:, 1] < b[:, 3])).all()
    assert ((m[:, 0] > b[:, 0]) & (m[:, 0] < b[:, 2])).all()


def test_no_face_gives_none(sample_data):
    frames = np.zeros((4, 240, 320, 3), np.uint8)
    frames[:] = np.linspace(0, 255, 320, dtype=np.uint8)[None, None, :, None]
    assert track_clip(frames, FaceConfig()) is None


def test_crop_square_survives_float_rounding_at_the_far_edge():
    frame = np.zeros((720, 1280, 3), np.uint8)
    # float32 box for which x0 - floor(x0) + side lands a hair past ceil(x0 + side)
    b = np.array([206.74081420898438, 181.14144897460938, 366.0966491699219, 294.02691650390625], np.float32)
    side = np.float32(1.3) * max(b[2] - b[0], b[3] - b[1])
    crop = crop_square(frame, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, side, 128)
    assert crop.shape == (128, 128, 3)

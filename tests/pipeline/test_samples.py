"""All six sample videos (DFDC, FF++, talking heads) through manifests, merge and extract."""

import numpy as np
import pytest
import zarr

from pipeline.store import item_row
from pipeline.faces import FaceConfig, detect
from pipeline.inspect import contact_sheet, inspect_store
from pipeline.media import read_audio

@pytest.fixture(scope="module")
def six(six_videos_store):
    return six_videos_store


def test_every_clip_of_every_video_has_a_face(six):
    store, summary, _ = six
    assert summary.errors == {}
    info = inspect_store(store)
    assert info["items"] == 6 and info["samples"] == 12 and info["with_video"] == 12
    assert info["failures"]["samples_by_reason"] == {} and info["failures"]["items_by_reason"] == {}
    assert info["by_split"] == {"train": 4, "val": 4, "none": 4}


def test_ffpp_has_no_audio_and_the_rest_is_sample_aligned(six):
    store, _, data = six
    g = zarr.open_group(str(store), mode="r")
    ids = g["meta/id"][:]
    for i, item in enumerate(ids):
        if item in ("original/004", "NeuralTextures/004_982"):
            assert not g["meta/has_audio"][i] and g["meta/status"][i] == 0
            continue
        assert g["meta/has_audio"][i]
        path = data / item_row(g, g["meta/item"][i])["path"]
        start = g["meta/start_frame"][i] * 640
        np.testing.assert_array_equal(g["audio/real"][i], read_audio(path)[start : start + 32 * 640])


def test_face_crops_show_faces_and_mouth_crops_are_centred_on_mouths(six):
    """A detector run again on the stored face crops finds a face in the middle of each, and
    the mouth it finds there lies at the centre of the stored mouth crop."""
    store, _, _ = six
    g = zarr.open_group(str(store), mode="r")
    cfg = FaceConfig(detect_short_side=10_000, min_face_size=40)
    S = 128
    for i in range(g["video/face"].shape[0]):
        faces = g["video/face"][i][::8]  # 4 frames per clip
        boxes = g["video/box"][i][::8]
        lms = g["video/landmarks"][i][::8]
        for f, d, box, lm in zip(faces, detect(faces, cfg), boxes, lms):
            assert len(d.boxes) >= 1, f"no face in face crop of sample {i}"
            k = int(np.argmax(d.probs))
            centre = (d.boxes[k, :2] + d.boxes[k, 2:]) / 2
            assert np.abs(centre - S / 2).max() < 0.15 * S, (i, centre)
            # the mouth found in the face crop, in source pixels
            side = 1.3 * max(box[2] - box[0], box[3] - box[1])
            origin = (box[:2] + box[2:]) / 2 - side / 2
            mouth_src = origin + d.landmarks[k, 3:5].mean(axis=0) * side / S
            mouth_crop_centre = lm[3:5].mean(axis=0)
            mouth_side = 0.5 * max(box[2] - box[0], box[3] - box[1])
            assert np.linalg.norm(mouth_src - mouth_crop_centre) < 0.2 * mouth_side, i


def test_contact_sheet(six, tmp_path):
    store, _, _ = six
    out = tmp_path / "six.png"
    assert contact_sheet(store, out, max_rows=12) == 12
    assert out.stat().st_size > 100_000

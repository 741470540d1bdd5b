"""Errors that name the file and what is wrong with it.

A :class:`MediaError` carries a short machine-readable ``reason`` (used to count failures by
reason in summaries and in the store's done-markers) and a human-readable message.
"""

from __future__ import annotations

# Reasons a media item or one of its clips can fail. Kept small and stable: they are counted
# in summaries and written into stores.
REASONS = {
    "missing": "file does not exist",
    "unreadable": "file cannot be opened or read",
    "wrong_kind": "file is not the kind of media expected",
    "decode_error": "ffmpeg could not decode the file",
    "no_video": "file has no video stream",
    "no_audio": "file has no audio track",
    "no_face": "no face found in the clip",
    "too_short": "media is shorter than one clip",
    "invalid_row": "manifest row is invalid",
    "outside_root": "path leads outside the corpus (refused before opening it)",
    "vocoder_error": "the vocoder failed on this clip",
    "internal_error": "unexpected error while processing (a bug: please report it)",
}


class MediaError(Exception):
    """A problem with one media file; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, path, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"Unknown failure reason {reason!r}; expected one of {sorted(REASONS)}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        text = f"{self.path}: {REASONS[reason]}"
        super().__init__(f"{text} ({detail})" if detail else text)

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}

"""OVI406: the first-frame image of an image-to-video shot exists, is an image, and fits."""
from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.diagnostics import Severity
from ovi_studio.media.images import VIDEO_SUFFIXES, upright_size

from ovi_studio.lint.registry import rule

ASPECT_TOLERANCE = 1.2  # requested vs image aspect, as a ratio either way

rule("OVI406", Severity.ERROR, "first-frame image missing, unreadable or of another shape",
     "An image-to-video shot starts from its `first_frame`. Error when the file does not exist or "
     "is not a readable image (checked with Pillow); warning when its aspect ratio differs from "
     f"the requested resolution/aspect by more than {ASPECT_TOLERANCE:g}x (the image is cropped, "
     "or padded with `fit: pad`, to the requested aspect: much of the picture may be lost). "
     "Paths are relative to "
     "the storyboard (or, for Ovi CSV files, to the CSV's folder).")


@dataclass(frozen=True)
class ImageFinding:
    message: str
    severity: Severity


def check_first_frame(path: Path, requested: tuple[int, int] | None) -> Iterator[ImageFinding]:
    """`requested` is the (height, width) the storyboard asks for, None when it asks nothing."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        yield ImageFinding(f"first frame `{path}` is {what}: fix the path (relative to the "
                           "storyboard) or remove `first_frame`", Severity.ERROR)
        return
    stat = path.stat()
    size = _first_frame_size(path, stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if isinstance(size, ImageFinding):
        yield size
        return
    width, height = size
    if requested is None or min(width, height, *requested) <= 0:
        return
    req_h, req_w = requested
    factor = math.exp(abs(math.log((width / height) / (req_w / req_h))))
    if factor > ASPECT_TOLERANCE:
        yield ImageFinding(f"first frame is {width}x{height} (aspect {width / height:.2f}) but the shot "
                           f"asks for {req_w}x{req_h} (aspect {req_w / req_h:.2f}): the image will be "
                           "cropped to that aspect (`fit: pad` adds bars instead) — crop it yourself "
                           "or drop `resolution`/`aspect` to keep the whole picture", Severity.WARNING)


@functools.lru_cache(maxsize=4096)
def _first_frame_size(path: Path, mtime_ns: int, size: int, inode: int) -> tuple[int, int] | ImageFinding:
    """(width, height) of a readable first frame, else the error; once per version of the file
    (the stat values are part of the key), however many shots start from it."""
    if path.suffix.lower() in VIDEO_SUFFIXES:  # the render starts from the video's last frame
        from ovi_studio.media import ffmpeg, probe
        try:
            stream = probe.probe(path).first("video")
        except ffmpeg.FfmpegError:
            stream = None
        if stream is None or not stream.width:
            return ImageFinding(f"first frame `{path.name}` is not a readable video: use a video "
                                "with a picture stream, or a PNG or JPEG file", Severity.ERROR)
        return stream.width, stream.height
    from PIL import Image, UnidentifiedImageError  # Pillow only when a shot has a first frame
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            return upright_size(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return ImageFinding(f"first frame `{path.name}` is not a readable image ({exc}): use a PNG or "
                            "JPEG file", Severity.ERROR)

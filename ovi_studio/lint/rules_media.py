"""OVI406: the first-frame image of an image-to-video shot exists, is an image, and fits."""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.diagnostics import Severity
from ovi_studio.media.images import ImageLoadError, first_frame_file

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
    """`requested` is the (height, width) the storyboard asks for, None when it asks nothing.
    The file is judged by the reader the plan and the render use (media.images), so `check`
    refuses exactly what they would; once per version of the file however many shots use it."""
    try:
        frame = first_frame_file(path)
    except ImageLoadError as exc:
        yield ImageFinding(f"{exc}: point `first_frame` (relative to the storyboard) at a PNG or "
                           "JPEG image or a video, or remove it", Severity.ERROR)
        return
    width, height = frame.width, frame.height
    if requested is None or min(width, height, *requested) <= 0:
        return
    req_h, req_w = requested
    factor = math.exp(abs(math.log((width / height) / (req_w / req_h))))
    if factor > ASPECT_TOLERANCE:
        yield ImageFinding(f"first frame is {width}x{height} (aspect {width / height:.2f}) but the shot "
                           f"asks for {req_w}x{req_h} (aspect {req_w / req_h:.2f}): the image will be "
                           "cropped to that aspect (`fit: pad` adds bars instead) — crop it yourself "
                           "or drop `resolution`/`aspect` to keep the whole picture", Severity.WARNING)

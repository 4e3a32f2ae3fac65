"""Still images: loading first frames (from an image or a video's last frame), fitting them to
a target size, and writing PNGs."""
from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ovi_studio.media import ffmpeg, probe
from ovi_studio.textfile import not_a_regular_file

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
# Far above any first frame the model can use (it is resized to about a megapixel), far below
# what would exhaust memory: a header declaring more is a decompression bomb, refused unread.
MAX_FIRST_FRAME_PIXELS = 8192 * 8192
MAX_IMAGE_BYTES = 256 << 20


class ImageLoadError(ValueError):
    """A first-frame file is missing, unreadable or not an image/video."""


def load_first_frame(path: str | Path) -> Image.Image:
    """An RGB image from an image file (upright: its EXIF orientation applied, as the
    reference's reader does), or the last frame of a video file. The plan and the
    render both read it: the decoded image is kept while the file is unchanged (a video is
    decoded through to its last frame, once)."""
    path = Path(path)
    _require_regular_file(path)
    stat = path.stat()
    return _decoded_first_frame(path.resolve(), stat.st_mtime_ns, stat.st_size).copy()


@functools.lru_cache(maxsize=16)
def _decoded_first_frame(path: Path, mtime_ns: int, size: int) -> Image.Image:
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return Image.fromarray(last_video_frame(path))
    with _open_image(path) as img:
        img.load()
        return ImageOps.exif_transpose(img).convert("RGB")


def _require_regular_file(path: Path) -> None:
    kind = not_a_regular_file(path)
    if kind == "missing":
        raise ImageLoadError(f"first frame {path} does not exist")
    if kind is not None:
        raise ImageLoadError(f"first frame {path} is {kind}, not an image or video file")
    if path.suffix.lower() not in VIDEO_SUFFIXES and path.stat().st_size > MAX_IMAGE_BYTES:
        raise ImageLoadError(f"first frame {path} is larger than {MAX_IMAGE_BYTES >> 20} MiB")


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """Pillow's image with its header checked against MAX_FIRST_FRAME_PIXELS; every way Pillow
    refuses a file becomes an ImageLoadError."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_FIRST_FRAME_PIXELS:
                raise ImageLoadError(
                    f"first frame {path} declares {width}x{height} pixels, more than "
                    f"{MAX_FIRST_FRAME_PIXELS:,} (a decompression bomb?)")
            yield img
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError) as exc:  # ValueError: a text chunk over Pillow's limit
        raise ImageLoadError(f"first frame {path} is not a readable image ({exc})") from None


# EXIF orientations that turn the picture a quarter turn (width and height swap)
_QUARTER_TURNS = {5, 6, 7, 8}
EXIF_ORIENTATION = 0x0112


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as it is meant to be seen: its EXIF orientation
    applied, as the reference's image reader applies it (without decoding the pixels)."""
    width, height = image.size
    # Pillow decodes a whole PNG to look for an eXIf chunk after the pixels; writers put it
    # before them (where `open` has already read it), so a PNG without one has no orientation.
    if image.format == "PNG" and "exif" not in image.info:
        return width, height
    if image.getexif().get(EXIF_ORIENTATION) in _QUARTER_TURNS:
        return height, width
    return width, height


@dataclass(frozen=True)
class FirstFrameFile:
    """What the plan needs of a first-frame file: its picture size and its content hash."""
    width: int
    height: int
    sha256: str  # "sha256:<hex>" of the file's bytes


def first_frame_file(path: str | Path) -> FirstFrameFile:
    """Size and hash of a first frame, read once per version of the file (path, size, mtime,
    inode): a frame shared by a thousand shots is hashed and probed once. The size comes from
    the image header (or, for a video, its stream header); nothing is decoded, but every chunk
    is walked (a huge text chunk, a bad checksum) so that `check`, the plan and the render
    refuse the same files."""
    path = Path(path)
    _require_regular_file(path)
    stat = path.stat()
    return _first_frame_file(path.resolve(), stat.st_mtime_ns, stat.st_size, stat.st_ino)


@functools.lru_cache(maxsize=4096)
def _first_frame_file(path: Path, mtime_ns: int, size: int, inode: int) -> FirstFrameFile:
    if path.suffix.lower() in VIDEO_SUFFIXES:
        width, height = _video_size(path)
    else:
        with _open_image(path) as img:  # reads the header only
            width, height = upright_size(img)
            img.verify()  # walks every chunk without decoding the pixels
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return FirstFrameFile(width, height, "sha256:" + digest.hexdigest())


def _video_size(path: Path) -> tuple[int, int]:
    try:
        video = probe.probe(path).first("video")
    except ffmpeg.FfmpegError as exc:
        raise ImageLoadError(f"{path} is not a readable video:\n{exc.stderr_tail}") from None
    if video is None or not video.width or not video.height:
        raise ImageLoadError(f"{path} has no video stream")
    if video.width * video.height > MAX_FIRST_FRAME_PIXELS:
        raise ImageLoadError(f"first frame {path} is {video.width}x{video.height} pixels, more "
                             f"than {MAX_FIRST_FRAME_PIXELS:,}")
    return video.width, video.height


def last_video_frame(path: str | Path) -> np.ndarray:
    """The last decoded frame of a video (decoding through; seeking by frame count is fragile)."""
    width, height = _video_size(Path(path))
    last = None
    for frame in ffmpeg.read_rawvideo(path, width, height):
        last = frame
    if last is None:
        raise ImageLoadError(f"{path} has no decodable frame")
    return last.copy()


def fit_aspect(img: Image.Image, requested: tuple[int, int] | None, mode: str = "crop") -> Image.Image:
    """An i2v first frame at the aspect of `requested` (height, width), at its own resolution:
    `crop` cuts the centre out, `pad` adds black bars; no pixel is resampled, so the engine's
    reference-exact resize stays the only resampling. Unchanged when nothing is requested or
    the image already has that aspect (to the pixel)."""
    src_w, src_h = img.size
    width, height = aspect_fitted_size(img.size, requested, mode)
    if (width, height) == (src_w, src_h):
        return img
    left, top = (src_w - width) // 2, (src_h - height) // 2
    if mode == "crop":
        return img.crop((left, top, left + width, top + height))
    canvas = Image.new("RGB", (width, height))
    canvas.paste(img, (-left, -top))
    return canvas


def aspect_fitted_size(size: tuple[int, int], requested: tuple[int, int] | None,
                       mode: str = "crop") -> tuple[int, int]:
    """(width, height) that fit_aspect makes of an image of `size` (width, height): what the
    plan needs, known from the header without the pixels."""
    src_w, src_h = size
    if requested is None:
        return size
    req_h, req_w = requested
    if mode == "crop":
        return min(src_w, round(src_h * req_w / req_h)), min(src_h, round(src_w * req_h / req_w))
    if mode == "pad":
        return max(src_w, round(src_h * req_w / req_h)), max(src_h, round(src_w * req_h / req_w))
    raise ValueError(f"fit must be 'crop' or 'pad', got {mode!r}")


def load_i2v_frame(path: str | Path, requested: tuple[int, int] | None, fit: str) -> Image.Image:
    """The first frame an i2v take starts from, as the plan sizes it and the engine gets it."""
    return fit_aspect(load_first_frame(path), requested, fit)


def fit_image(img: Image.Image, height: int, width: int, mode: str = "crop") -> Image.Image:
    """Resize to exactly (height, width): `crop` scales to cover then centre-crops, `pad` scales
    to fit and letterboxes with black."""
    if img.size == (width, height):
        return img
    src_w, src_h = img.size
    if mode == "crop":
        scale = max(width / src_w, height / src_h)
    elif mode == "pad":
        scale = min(width / src_w, height / src_h)
    else:
        raise ValueError(f"fit must be 'crop' or 'pad', got {mode!r}")
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
    if mode == "crop":
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return resized.crop((left, top, left + width, top + height))
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def save_png(path: str | Path, frame: np.ndarray | Image.Image) -> None:
    img = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, np.uint8))
    img.save(path, format="PNG")

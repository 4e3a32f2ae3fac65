"""First frames as the reference reads them: EXIF orientation applied, the original pixels
resampled once by the engine's reference-exact resize (aspect changes crop or pad at the
source resolution), compared with the reference's own i2v input path on real files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from engine.image import image_tensor
from ovi_studio.media.images import fit_aspect, load_first_frame, load_i2v_frame
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.preview import PreviewEngine
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.session import RenderSession

DATA = Path(__file__).parent / "golden" / "data"
GOLDEN = DATA / "i2v_input_path.safetensors"
EXIF_ORIENTATION = 0x0112
# the stored pixels that show upright under each orientation (the inverse of what it applies)
STORED = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def golden_cases():
    with safe_open(str(GOLDEN), "pt") as f:
        cases, area = json.loads(f.metadata()["cases"]), json.loads(f.metadata()["provenance"])["area"]
    return [(DATA / c["file"], area, f"case.{i}.output") for i, c in enumerate(cases)]


@pytest.mark.parametrize("path, area, key", golden_cases(), ids=lambda v: getattr(v, "name", None))
def test_our_i2v_input_path_matches_the_reference_bit_for_bit(path, area, key):
    expected = load_file(str(GOLDEN))[key]
    got = image_tensor(load_i2v_frame(path, None, "crop"), area)
    assert got.shape == expected.shape and torch.equal(got, expected), path.name


def _upright(height=60, width=100) -> np.ndarray:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    pixels[:10, :20] = (255, 0, 0)  # top-left mark: any wrong turn or flip moves it
    return pixels


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_rotated_first_frame_matches_its_upright_copy(tmp_path, orientation):
    upright = _upright()
    stored = Image.fromarray(upright)
    if orientation in STORED:
        stored = stored.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"phone{orientation}.png"
    stored.save(path, exif=exif.tobytes())
    assert np.array_equal(np.asarray(load_first_frame(path)), upright)


def test_an_aspect_change_crops_or_pads_at_the_source_resolution_without_resampling():
    image = Image.fromarray(_upright(90, 160))
    cropped = fit_aspect(image, (720, 720), "crop")
    assert cropped.size == (90, 90)
    assert np.array_equal(np.asarray(cropped), np.asarray(image)[:, 35:125])
    padded = fit_aspect(image, (720, 720), "pad")
    assert padded.size == (160, 160)
    assert np.array_equal(np.asarray(padded)[35:125], np.asarray(image))
    assert not np.asarray(padded)[:35].any()
    assert fit_aspect(image, (720, 1280), "crop") is image  # already 16:9: untouched
    assert fit_aspect(image, None, "crop") is image


class RecordingPreview(PreviewEngine):
    """The preview engine, keeping the first frame the session hands over."""
    seen: list = []

    def render(self, job, first_frame, on_step=None, on_phase=None):
        RecordingPreview.seen.append((job, first_frame))
        return super().render(job, first_frame, on_step, on_phase)


@pytest.mark.slow
@pytest.mark.parametrize("extra, source_size", [("", (160, 90)), ("    aspect: '1:1'\n", (90, 90))])
def test_the_session_hands_the_engine_the_upright_source_pixels(tmp_path, extra, source_size):
    """A rotated phone photo is not a sideways first frame, and the engine gets the original
    pixels (aspect-fitted at their own resolution) to resample once itself."""
    upright = _upright(90, 160)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(upright).transpose(STORED[6]).save(tmp_path / "phone.jpg", quality=95,
                                                       exif=exif.tobytes())
    story = tmp_path / "s.yaml"
    story.write_text("version: 1\nmodel: 720x720_5s\nshots:\n  - id: photo\n    first_frame: phone.jpg\n"
                     f"{extra}    scene: A street at noon.\n    audio: Traffic.\n")
    RecordingPreview.seen = []
    session = RenderSession(RenderOptions(source=story, out_dir=tmp_path / "out", engine="preview"),
                            RenderProgress(quiet=True), engine_factory=lambda: RecordingPreview(speech=False))
    plan = session.prepare()
    assert session.run().exit_code == 0
    (job, frame), = RecordingPreview.seen
    assert frame.size == source_size  # landscape, unresampled
    expected = load_i2v_frame(tmp_path / "phone.jpg", plan.steps[0].shot.settings.asked_size(
        session.loaded.variant), "crop")
    assert np.array_equal(np.asarray(frame), np.asarray(expected))
    height, width = tuple(image_tensor(frame, session.loaded.variant.video_area).shape[-2:])
    assert (job.height, job.width) == (plan.steps[0].height, plan.steps[0].width) == (height, width)

"""Make the golden outputs of the reference's whole i2v input path: an image FILE (PNG or JPEG,
several sizes and aspects, JPEGs carrying each EXIF orientation) read and preprocessed by the
reference's `preprocess_image_tensor(path, ...)`, which decodes with OpenCV (EXIF orientation
applied) and resizes the original pixels once with its bicubic. Run by hand, never by the
test suite:

    .venv/bin/python tests/golden/make_i2v_goldens.py [--reference /work/ovi-ref]

Needs opencv-python-headless (the `golden` extra). Writes the input files to
data/i2v_inputs/ and data/i2v_input_path.safetensors with the reference's outputs; the
provenance (reference commit, command, library versions) is in the file's metadata and in
I2V_INPUT_PATH.md. tests/test_first_frames.py compares our path (load_first_frame ->
engine.image.image_tensor) with it.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.golden.refenv import DEFAULT_REFERENCE, import_reference  # noqa: E402

DATA = Path(__file__).parent / "data"
INPUTS = DATA / "i2v_inputs"
AREA = 96 * 96  # small outputs; the size search and the resize are the same at any area
# (name, height, width, format, EXIF orientation or None)
CASES = [
    ("landscape_16x9", 90, 160, "png", None),
    ("portrait_9x16", 160, 90, "png", None),
    ("square", 120, 120, "png", None),
    ("odd_4x3", 97, 131, "png", None),
    ("landscape_16x9", 90, 160, "jpg", None),
    ("portrait_3x4", 140, 105, "jpg", None),
    ("wide_21x9", 72, 168, "jpg", None),
    *[(f"exif{o}", 90, 160, "jpg", o) for o in range(1, 9)],
]
EXIF_ORIENTATION = 0x0112


def picture(height: int, width: int, seed: int) -> np.ndarray:
    """Gradients, a few hard edges and noise: every resampling difference shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([255 * x / width, 255 * y / height, 128 + 60 * np.sin(x / 5 + y / 7)], axis=-1)
    base[height // 3: height // 2, width // 4: width // 3] = (250, 20, 20)  # an asymmetric mark
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def stored_for(pixels: np.ndarray, orientation: int | None) -> np.ndarray:
    """The pixels a camera stores so that applying `orientation` shows `pixels` upright."""
    inverse = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_270}
    if orientation in (None, 1):
        return pixels
    return np.asarray(Image.fromarray(pixels).transpose(inverse[orientation]))


def write_inputs() -> list[tuple[str, Path, int | None]]:
    INPUTS.mkdir(parents=True, exist_ok=True)
    out = []
    for index, (name, height, width, fmt, orientation) in enumerate(CASES):
        path = INPUTS / f"{name}.{fmt}"
        image = Image.fromarray(stored_for(picture(height, width, seed=index), orientation))
        if fmt == "png":
            image.save(path, format="PNG")
        else:
            exif = Image.Exif()
            if orientation is not None:
                exif[EXIF_ORIENTATION] = orientation
            image.save(path, format="JPEG", quality=90, exif=exif.tobytes())
        out.append((path.stem + "." + fmt, path, orientation))
    return out


def provenance(reference: Path) -> dict:
    commit = subprocess.run(["git", "-C", str(reference), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "5b69b25 (checkout without .git)"
    versions = {name: importlib.metadata.version(name)
                for name in ("torch", "numpy", "Pillow", "opencv-python-headless")}
    return {"reference": "character-ai/Ovi", "reference_commit": commit,
            "function": "ovi.utils.processing_utils.preprocess_image_tensor(path, 'cpu', torch.bfloat16, "
                        f"resize_total_area={AREA})",
            "command": "python tests/golden/make_i2v_goldens.py", "versions": versions,
            "area": AREA}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=Path, default=Path(DEFAULT_REFERENCE))
    args = parser.parse_args()
    inputs = write_inputs()
    tensors, cases = {}, []
    with import_reference(args.reference) as ref:
        processing = ref.module("ovi.utils.processing_utils")
        for i, (name, path, orientation) in enumerate(inputs):
            tensors[f"case.{i}.output"] = processing.preprocess_image_tensor(
                str(path), "cpu", torch.bfloat16, resize_total_area=AREA).contiguous()
            cases.append({"file": f"i2v_inputs/{name}", "orientation": orientation})
    meta = provenance(args.reference)
    save_file(tensors, str(DATA / "i2v_input_path.safetensors"),
              metadata={"cases": json.dumps(cases), "provenance": json.dumps(meta)})
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()

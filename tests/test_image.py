"""i2v first-frame preprocessing against the reference's `preprocess_image_tensor`."""
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

GOLDEN = Path(__file__).parent / "golden" / "data" / "components_image.safetensors"


def cases():
    with safe_open(str(GOLDEN), "pt") as f:
        images = json.loads(f.metadata()["images"])
    tensors = load_file(str(GOLDEN))
    return [(Image.fromarray(tensors[f"image.{i}.input"].numpy()), area, tensors[f"image.{i}.output"])
            for i, (_, _, _, area) in enumerate(images)]


@pytest.mark.parametrize("index", range(5))
def test_matches_reference_bit_for_bit(index):
    image, area, expected = cases()[index]
    got = image_tensor(image, area)
    assert got.dtype == torch.bfloat16 and got.shape == expected.shape
    assert torch.equal(got, expected), f"{image.mode} {image.size}"


@pytest.mark.parametrize("size, area, target", [
    ((720, 1280), 720 * 720, (544, 960)),
    ((1024, 1024), 960 * 960, (960, 960)),
    ((768, 1024), 720 * 720, (608, 832)),
])
def test_target_sizes_of_the_spec(size, area, target):
    image = Image.fromarray(np.zeros((*size, 3), dtype=np.uint8))
    assert tuple(image_tensor(image, area).shape) == (1, 3, *target)


def test_values_are_minus_one_to_one_without_clamp():
    """Bicubic overshoot is kept, as in the reference (no clamp after the resize)."""
    checker = (np.indices((40, 40)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = image_tensor(Image.fromarray(checker).convert("RGB"), 4096)
    assert out.shape == (1, 3, 64, 64)
    assert out.min() < -1 and out.max() > 1

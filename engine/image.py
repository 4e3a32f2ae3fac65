"""First-frame preprocessing for i2v: PIL image -> [1, 3, H, W] bf16 in [-1, 1].

The target size comes from `engine.variants.best_i2v_size`. The order of the casts is the
reference's, because it decides the bf16 rounding: uint8 / 255 in fp32, cast to bf16, then
`x·2 − 1` in bf16, then a bicubic resize in bf16 (no antialias, no clamp, no crop).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.variants import best_i2v_size


def image_tensor(image: Image.Image, area: int, *, device="cpu", dtype=torch.bfloat16) -> torch.Tensor:
    """RGB pixels resized to the variant's area: [1, 3, H, W] with H, W multiples of 32."""
    rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    x = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)
    x = x.to(device, dtype=dtype).unsqueeze(0) * 2.0 - 1.0
    height, width = x.shape[-2:]
    target = best_i2v_size(height, width, area)
    if target != (height, width):
        x = F.interpolate(x, size=target, mode="bicubic", align_corners=False)
    return x

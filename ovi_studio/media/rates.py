"""The time bases every deliverable shares, defined once: the model renders 24 frames a second
with 16 kHz audio; the cut carries 48 kHz audio, exactly 2000 samples a frame."""
from engine.variants import AUDIO_SAMPLE_RATE as MODEL_AUDIO_RATE
from engine.variants import FPS

CUT_AUDIO_RATE = 48_000
SAMPLES_PER_FRAME = CUT_AUDIO_RATE // FPS  # 2000

__all__ = ["FPS", "MODEL_AUDIO_RATE", "CUT_AUDIO_RATE", "SAMPLES_PER_FRAME"]

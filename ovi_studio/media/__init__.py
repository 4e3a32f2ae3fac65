"""Media I/O without ffprobe: an ffmpeg wrapper, probing, float WAV and image helpers."""

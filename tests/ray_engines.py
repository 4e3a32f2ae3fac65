"""Preview engines with faults, for the Ray tests: the workers import this module (the tests put
tests/ on the cluster's PYTHONPATH), so each is passed to the actors by reference."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ovi_studio.render.preview import PreviewEngine


class SlowPreview(PreviewEngine):
    """The preview, taking at least `seconds` per take (so concurrency shows in the event log)."""

    def __init__(self, seconds: float = 1.0):
        super().__init__(speech=False)
        self.seconds = seconds

    def render(self, job, first_frame, on_step=None, on_phase=None):
        time.sleep(self.seconds)
        return super().render(job, first_frame, on_step, on_phase)


class DiesOnce(SlowPreview):
    """Kills its own process in the middle of rendering `shot`, the first time only (a marker
    file remembers it across the actor's restart)."""

    def __init__(self, shot: str, marker: str):
        super().__init__(0.5)
        self.shot, self.marker = shot, Path(marker)

    def render(self, job, first_frame, on_step=None, on_phase=None):
        if job.shot_id == self.shot and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            if on_step:
                on_step(1, 2)
            os._exit(1)
        return super().render(job, first_frame, on_step, on_phase)


class AlwaysFails(SlowPreview):
    def __init__(self, shot: str):
        super().__init__(0.2)
        self.shot = shot

    def render(self, job, first_frame, on_step=None, on_phase=None):
        if job.shot_id == self.shot:
            raise RuntimeError(f"{self.shot} cannot render")
        return super().render(job, first_frame, on_step, on_phase)

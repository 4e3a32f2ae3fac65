"""The command line: a thin layer over the library. One module per command group."""
from __future__ import annotations

from ovi_studio.cli.app import app

# Each module registers its commands on `app` when imported.
from ovi_studio.cli import check_cmd, storyboard_cmds, cache_cmd, render_cmd, delivery_cmds, fetch_cmd, batch_cmd  # noqa: E402,F401


def main() -> None:
    app()

"""The CLI run in a child process that blocks at a chosen call, so a test can kill it there.

`start_blocked` wraps one function of a module in the child: at the call where `when` (an
expression over `calls`, the number of calls so far, and `args`) is true it writes a marker file
and sleeps; the test waits for the marker, then signals the child wherever it stopped.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

_SCRIPT = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    import {module} as target
    marker = Path(sys.argv[1])
    original = target.{function}
    calls = 0
    def blocking(*args, **kwargs):
        global calls
        calls += 1
        result = original(*args, **kwargs) if {call_first} else None
        if {when}:
            marker.write_text(repr(args[:1]))
            time.sleep(600)
        return result if {call_first} else original(*args, **kwargs)
    target.{function} = blocking
    from ovi_studio.cli import app
    sys.argv = ["ovi-studio", *sys.argv[2:]]
    app()
""")


def start_blocked(folder: Path, module: str, function: str, when: str, cli_args: list[str], *,
                  call_first: bool = False, timeout: float = 300) -> subprocess.Popen:
    """Start `ovi-studio CLI_ARGS` with `module.function` wrapped, and return once it blocks.
    `call_first`: the wrapped call completes before the block (its file is written)."""
    script, marker = folder / "blocking_cli.py", folder / "blocked"
    script.write_text(_SCRIPT.format(module=module, function=function, when=when, call_first=call_first))
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(script), str(marker), *cli_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, f"the render never reached {function} where {when}"
        time.sleep(0.05)
    return proc

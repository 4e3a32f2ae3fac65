"""`ovi-studio fetch` against a local stand-in of the Hugging Face Hub (tests/fake_hub.py):
exactly the files a variant needs, verified, resumable, atomic, and clear errors."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.arch import ARCH_FILENAME
from engine.testing.tiny_checkpoint import TINY_SHORT_ARCH
from ovi_studio.cli import app
from ovi_studio.fetch import plan_fetch, run_fetch
from ovi_studio.errors import UserError

from fake_hub import FakeHub, repos_from_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "chetwinlow1/Ovi"
WEIGHTS = "model.safetensors"
WAN, VAE = "Wan-AI/Wan2.2-TI2V-5B", "Wan2.2_VAE.pth"  # the largest tiny file (19 MiB)
# Files the hub has that a 720x720_5s fetch must leave alone.
DECOYS = {MODEL: {"model_960x960.safetensors": b"other variant" * 100, "README.md": b"# Ovi"},
          "Wan-AI/Wan2.2-TI2V-5B": {"diffusion_pytorch_model.safetensors": b"not ours" * 100},
          "hkchengrex/MMAudio": {"weights/mmaudio_large_44k.pth": b"not ours" * 100}}
runner = CliRunner()


def point_hub_at(monkeypatch, endpoint: str) -> None:
    """What HF_ENDPOINT does when set before huggingface_hub is imported."""
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", endpoint)
    monkeypatch.setattr("huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def hub(tiny_ckpt_short, monkeypatch, tmp_path):
    """The fake hub serving the tiny checkpoint, set as huggingface_hub's endpoint, with
    HF_HOME (where partial downloads live) in the test's folder."""
    server = FakeHub(repos_from_checkpoint(tiny_ckpt_short, DECOYS))
    point_hub_at(monkeypatch, server.start())
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    yield server
    try:
        server.stop()
    except OSError:
        pass


def fetch(*args) -> object:
    return runner.invoke(app, ["fetch", *map(str, args)])


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def partial_bytes(tmp_path: Path, data: bytes) -> int:
    """How much of the file with these contents is downloaded (partial files are named by hash)."""
    part = tmp_path / "hf-home" / "ovi-studio" / "partial" / f"{hashlib.sha256(data).hexdigest()}.part"
    return part.stat().st_size if part.exists() else 0


def layout_files(folder: Path) -> dict[str, bytes]:
    """The checkpoint files (not our hidden verification records or arch.json)."""
    return {rel: data for rel, data in files_under(folder).items()
            if not rel.startswith(".") and rel != ARCH_FILENAME}


@pytest.mark.slow
def test_fetch_of_one_variant_gets_exactly_its_files_verified_and_renders(hub, tiny_ckpt_short, tmp_path):
    ckpts = tmp_path / "ckpts"
    result = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s")
    assert result.exit_code == 0, result.output
    assert layout_files(ckpts) == layout_files(tiny_ckpt_short)  # byte for byte, and nothing else
    assert "9 files" in result.output and "to download: 9 files" in result.output
    assert not any(p.is_file() for p in (tmp_path / "hf-home").rglob("*"))  # no partial left behind

    again = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s")
    assert again.exit_code == 0 and "nothing to fetch" in again.output, again.output
    assert all(rng is None for rng in hub.downloads(WEIGHTS)) and len(hub.downloads(WEIGHTS)) == 1

    (ckpts / ARCH_FILENAME).write_text(json.dumps(TINY_SHORT_ARCH))  # the tiny model states its size
    story = tmp_path / "story.yaml"
    story.write_text("version: 1\nmodel: 720x720_5s\nshots:\n  - id: one\n    scene: A beach.\n    audio: waves\n")
    render = runner.invoke(app, ["render", str(story), "-o", str(tmp_path / "out"), "--engine", "ovi",
                                 "--ckpt-dir", str(ckpts), "--device", "cpu", "--set", "steps=1", "-q"])
    assert render.exit_code == 0, render.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["shots"][0]["takes"][0]["status"] == "rendered"


def test_dry_run_lists_sizes_and_print_urls_gives_pinned_urls(hub, tmp_path):
    ckpts = tmp_path / "ckpts"
    listed = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s", "--dry-run")
    assert listed.exit_code == 0, listed.output
    assert "Ovi/model.safetensors" in listed.output and "MiB" in listed.output
    assert not ckpts.exists() and hub.downloads(WEIGHTS) == []
    urls = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s", "--print-urls")
    lines = [line.split("\t") for line in urls.output.splitlines()]
    assert len(lines) == 9 and all(len(fields) == 4 for fields in lines)
    weights = next(fields for fields in lines if fields[1].endswith("Ovi/model.safetensors"))
    assert weights[0].endswith(f"/{MODEL}/resolve/{'0123456789abcdef' * 2 + '01234567'}/{WEIGHTS}")
    assert weights[3].startswith("sha256:")


def test_a_file_with_the_wrong_hash_is_refused_and_nothing_is_left(hub, tmp_path):
    hub.corrupt.add(WEIGHTS)
    ckpts = tmp_path / "ckpts"
    result = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s")
    assert result.exit_code == 2
    assert "do not match the hub's sha256" in result.output and "Traceback" not in result.output
    assert not (ckpts / "Ovi" / WEIGHTS).exists()
    assert not any(p.is_file() for p in (tmp_path / "hf-home").rglob("*"))


def test_a_server_that_goes_away_mid_file_leaves_no_partial_file_then_resumes(hub, tmp_path, monkeypatch):
    data = hub.repos[WAN][VAE]
    hub.vanish_after[VAE] = len(data) * 3 // 4  # past huggingface_hub's first 10 MiB write
    ckpts = tmp_path / "ckpts"
    monkeypatch.setattr("time.sleep", lambda s: None)  # huggingface_hub's pauses between retries
    result = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s")
    assert result.exit_code == 2 and "cannot reach" in result.output, result.output
    assert not (ckpts / "Wan2.2-TI2V-5B" / VAE).exists()
    assert {p.name for p in ckpts.rglob(".*")} <= {".fetch-verified.json"}  # no hidden partial either
    have = partial_bytes(tmp_path, data)
    assert 0 < have < len(data)

    resumed = FakeHub(hub.repos)  # the server is back
    point_hub_at(monkeypatch, resumed.start())
    try:
        result = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s")
        assert result.exit_code == 0, result.output
        assert "resume at" in result.output, result.output
        assert resumed.downloads(VAE) == [f"bytes={have}-"] and resumed.sent[VAE] == len(data) - have
        assert (ckpts / "Wan2.2-TI2V-5B" / VAE).read_bytes() == data
    finally:
        resumed.stop()


@pytest.mark.slow
def test_a_fetch_killed_half_way_resumes_where_it_stopped(hub, tmp_path):
    """A real process, killed with SIGKILL mid-file, configured only by HF_ENDPOINT and HF_HOME."""
    hub.slow[VAE] = 0.02
    ckpts = tmp_path / "ckpts"
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"),
           "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ovi_studio", "fetch", "--ckpt-dir", str(ckpts),
                             "--models", "720x720_5s"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and partial_bytes(tmp_path, hub.repos[WAN][VAE]) == 0 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    have = partial_bytes(tmp_path, hub.repos[WAN][VAE])
    assert 0 < have < len(hub.repos[WAN][VAE])
    assert not (ckpts / "Wan2.2-TI2V-5B" / VAE).exists()

    hub.slow.clear()
    result = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s")
    assert result.exit_code == 0, result.output
    assert hub.downloads(VAE)[-1] == f"bytes={have}-"
    assert (ckpts / "Wan2.2-TI2V-5B" / VAE).read_bytes() == hub.repos[WAN][VAE]


def test_errors_say_what_to_do_and_write_nothing(hub, tmp_path, monkeypatch):
    ckpts = tmp_path / "ckpts"
    hub.token = "hf_right"
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    denied = fetch("--ckpt-dir", ckpts)
    assert denied.exit_code == 2 and "HTTP 401" in denied.output and "HF_TOKEN" in denied.output
    monkeypatch.setenv("HF_TOKEN", "hf_right")  # the token reaches the hub
    allowed = fetch("--ckpt-dir", ckpts, "--models", "720x720_5s", "--dry-run")
    assert allowed.exit_code == 0, allowed.output

    del hub.repos[MODEL]
    missing = fetch("--ckpt-dir", ckpts)
    assert missing.exit_code == 2 and "not found" in missing.output and "HF_ENDPOINT" in missing.output

    point_hub_at(monkeypatch, "http://127.0.0.1:9")  # nothing listens there
    offline = fetch("--ckpt-dir", ckpts)
    assert offline.exit_code == 2 and "cannot reach http://127.0.0.1:9" in offline.output
    assert not ckpts.exists()
    for result in (denied, missing, offline):
        assert "Traceback" not in result.output


def test_a_full_disk_or_a_read_only_folder_stops_before_downloading(hub, tmp_path, monkeypatch):
    ckpts = tmp_path / "ckpts"
    plan = plan_fetch(ckpts, ("720x720_5s",), partial_dir=tmp_path / "partial")
    with monkeypatch.context() as patch:
        patch.setattr("shutil.disk_usage", lambda path: type("Usage", (), {"free": 1000})())
        with pytest.raises(UserError, match="not enough free space .* nothing was downloaded"):
            run_fetch(plan, progress=False)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")
    with monkeypatch.context() as patch:
        patch.setattr("tempfile.mkstemp", read_only)
        with pytest.raises(UserError, match="cannot write to .*Read-only file system"):
            run_fetch(plan, progress=False)
    assert hub.downloads(WEIGHTS) == [] and not list(ckpts.rglob("*.safetensors"))


def test_fp8_fetches_the_published_fp8_file_instead_of_the_bf16_one(hub, tmp_path):
    hub.repos["rkfg/Ovi-fp8_quantized"] = {"model_fp8_e4m3fn.safetensors": b"fp8 weights" * 1000}
    plan = plan_fetch(tmp_path / "ckpts", ("720x720_5s", "960x960_5s"), fp8=True)
    dests = {item.file.dest for item in plan.items}
    assert "Ovi/model_fp8_e4m3fn.safetensors" in dests and "Ovi/model.safetensors" not in dests
    assert "Ovi/model_960x960.safetensors" in dests  # no published fp8: converted at load

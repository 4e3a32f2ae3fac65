"""`init` scaffolds storyboards that load clean; `doctor` says what is missing and how to fix it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import layout
from engine.variants import VARIANTS
from ovi_studio import templates as tpl
from ovi_studio.cli import app
from ovi_studio.doctor import check_checkpoints, exit_code
from ovi_studio.storyboard import load_storyboard

runner = CliRunner()


def test_init_writes_a_clean_starter(tmp_path):
    folder = tmp_path / "my-film"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "templates").is_dir() and (folder / "README.md").is_file()
    schema = json.loads((folder / "storyboard.schema.json").read_text())
    assert "shots" in schema["properties"]
    assert "$schema=storyboard.schema.json" in (folder / "story.yaml").read_text()
    loaded = load_storyboard(folder / "story.yaml")
    assert loaded.diagnostics == [] and len(loaded.shots) == 2
    assert loaded.model.title == "my film" and loaded.shots[1].extends == "arrival"
    again = runner.invoke(app, ["init", str(folder)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, ["init", str(folder), "--force"]).exit_code == 0


@pytest.mark.parametrize("name", sorted(p.stem for p in tpl.PROJECT_TEMPLATES.glob("*.yaml")))
def test_init_from_each_template_loads_clean(tmp_path, name):
    result = runner.invoke(app, ["init", str(tmp_path), "--template", name])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "templates" / f"{name}.yaml").is_file()  # the folder is self-contained
    loaded = load_storyboard(tmp_path / "story.yaml")
    assert loaded.diagnostics == [] and loaded.shots[0].template == name


def test_init_unknown_template(tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path), "--template", "nope"])
    assert result.exit_code == 2 and "talking-head" in result.output


def _fake_checkpoint(root: Path, variants=("720x720_5s",)) -> Path:
    for name in variants:
        for rel in layout.required_files(VARIANTS[name]):
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel == layout.TOKENIZER_DIR:
                target.mkdir(exist_ok=True)
            else:
                target.write_bytes(b"x")
    return root


def test_checkpoint_findings_end_with_the_one_fetch_command(tmp_path):
    findings = check_checkpoints(tmp_path / "absent")
    assert exit_code(findings) == 1
    by_name = {f.name: f for f in findings}
    assert by_name[layout.T5_WEIGHTS].status == "fail"
    assert by_name["fetch"].fix == f"ovi-studio fetch --ckpt-dir {tmp_path / 'absent'}"  # every variant
    assert [f.name for f in findings if f.fix and "fetch" in f.fix] == ["checkpoints", "fetch"]
    root = _fake_checkpoint(tmp_path / "ckpts")
    findings = check_checkpoints(root)
    assert exit_code(findings) == 0
    by_name = {f.name: f for f in findings}
    assert by_name["Ovi/model.safetensors"].status == "ok"
    assert by_name["Ovi/model_960x960_10s.safetensors"].status == "warn"
    assert by_name["fetch"].status == "warn"
    assert by_name["fetch"].fix == f"ovi-studio fetch --ckpt-dir {root} --models 960x960_5s,960x960_10s"
    _fake_checkpoint(root, tuple(VARIANTS))
    assert "fetch" not in {f.name for f in check_checkpoints(root)}


def test_doctor_command(tmp_path, monkeypatch):
    root = _fake_checkpoint(tmp_path / "ckpts")
    monkeypatch.setenv("OVI_CKPT_DIR", str(root))
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert "python" in result.output and "torch" in result.output and "ffmpeg" in result.output
    assert "Ovi/model.safetensors: present" in result.output
    assert result.exit_code == 0, result.output
    missing = runner.invoke(app, ["doctor", "--ckpt-dir", str(tmp_path / "none")], env={"COLUMNS": "200"})
    assert missing.exit_code == 1 and f"fix: ovi-studio fetch --ckpt-dir {tmp_path / 'none'}" in missing.output


def test_doctor_suggests_a_memory_preset_per_gpu(monkeypatch):
    import types

    import torch

    from ovi_studio.doctor import check_torch
    cards = [("NVIDIA H100 80GB HBM3", 79.2), ("NVIDIA GeForce RTX 4070", 11.7),
             ("NVIDIA GeForce RTX 3060", 12.0)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(cards))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(
        name=cards[i][0], total_memory=int(cards[i][1] * 2**30)))
    messages = [f.detail for f in check_torch() if f.name.startswith("gpu")]
    assert [m.split("suggested memory preset: ")[1].split()[0] for m in messages] == ["80gb", "8gb", "12gb"]


def test_init_leaves_nothing_behind_when_it_fails(tmp_path, monkeypatch):
    from ovi_studio import scaffold
    folder = tmp_path / "new" / "film"
    assert runner.invoke(app, ["init", str(folder), "--template", "nope"]).exit_code == 2
    assert not (tmp_path / "new").exists()  # a bad template is refused before anything is made

    real = scaffold.Path.write_text

    def disk_full(self, text, *args, **kwargs):
        if self.name == scaffold.SCHEMA:
            raise OSError(28, "No space left on device", str(self))
        return real(self, text, *args, **kwargs)
    monkeypatch.setattr(scaffold.Path, "write_text", disk_full)
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 2 and "No space left" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep")
    assert runner.invoke(app, ["init", str(existing)]).exit_code == 2
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_doctor_json_lists_every_finding_with_its_fix_and_espeak():
    import json
    result = runner.invoke(app, ["doctor", "--json", "--ckpt-dir", "/nonexistent"])
    data = json.loads(result.output)
    names = {f["name"]: f for f in data["findings"]}
    assert {"python", "ffmpeg", "espeak-ng", "checkpoints"} <= set(names)
    assert data["ok"] is False and result.exit_code == 1
    if names["espeak-ng"]["status"] != "ok":
        assert "apt-get install espeak-ng" in names["espeak-ng"]["fix"]


def test_help_names_the_program_with_readable_placeholders_and_commands_stay_whole_when_piped():
    result = runner.invoke(app, ["render", "--help"], env={"COLUMNS": "200"})
    assert "Usage: ovi-studio render" in result.output and "python -m" not in result.output
    assert "<list[str]>" not in result.output and "KEY=VALUE" in result.output and "DIR" in result.output
    assert "--install-completion" in runner.invoke(app, ["--help"]).output
    assert runner.invoke(app, ["--version"]).output.startswith("ovi-studio ")
    piped = runner.invoke(app, ["doctor", "--ckpt-dir", "/a/very/long/path/" + "x" * 120], env={"COLUMNS": "40"})
    assert any(line.strip().startswith("fix: ovi-studio fetch --ckpt-dir /a/very/long/path/" + "x" * 120)
               for line in piped.output.splitlines())

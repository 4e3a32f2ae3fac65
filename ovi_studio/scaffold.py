"""`ovi-studio init`: a storyboard folder to start from (story.yaml, templates/, the JSON
Schema for editor completion, README.md)."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ovi_studio import templates as tpl
from ovi_studio.errors import UserError
from ovi_studio.source import new_yaml
from ovi_studio.storyboard import storyboard_schema

STORY = "story.yaml"
SCHEMA = "storyboard.schema.json"  # named by the yaml-language-server modeline for completion

STARTER = """\
# yaml-language-server: $schema=storyboard.schema.json
# A starter storyboard: `ovi-studio check story.yaml`, `ovi-studio plan story.yaml`,
# then `ovi-studio render story.yaml`. Editor completion comes from storyboard.schema.json
# (refresh it with `ovi-studio schema > storyboard.schema.json`).
version: 1
title: {title}
model: 960x960_5s
defaults:
  aspect: "16:9"
  seed: 100
characters:
  mara:
    look: a woman in her forties with silver-streaked black hair and a dark green field jacket
    voice: a low, steady female voice with a slight rasp
    name: Mara
shots:
  - id: arrival
    scene: >-
      {{mara}} steps out of an old pickup truck at the edge of a foggy pine forest at dawn.
      She looks at the trees, then turns to the camera.
    dialogue:
      - speaker: mara
        line: They said nobody comes out here anymore.
    audio: Birdsong, a truck engine ticking as it cools, soft wind in the pines.
  - id: forest
    extends: arrival
    scene: >-
      Mara walks into the fog between the pines, the camera following at shoulder height.
    dialogue:
      - speaker: mara
        line: Good. Then nobody will bother us.
    audio: Footsteps on wet needles, distant crows, wind.
"""


def init_folder(folder: Path, template: str | None = None, force: bool = False) -> list[Path]:
    """Write the starter files into `folder`; returns what was written. Everything is decided
    and rendered before the first write; when a write fails, what this call created is removed
    (folders included) and what was there before is left as it was."""
    story = folder / STORY
    if story.exists() and not force:
        raise UserError(f"{story} already exists", hint="pass --force to overwrite it")
    files: dict[Path, str] = {}
    copies: dict[Path, Path] = {}
    if template is None:
        files[story] = STARTER.format(title=json.dumps(_title(folder)))
    else:
        found = tpl.find_template(template, folder)
        if found is None:
            known = ", ".join(tpl.available_templates(folder))
            raise UserError(f"unknown template `{template}`", hint=f"available: {known}")
        loaded = tpl.load_template(found)
        copy = folder / "templates" / found.name
        if found.resolve() != copy.resolve():
            copies[copy] = found
        files[story] = _template_story(loaded, _title(folder))
    files[folder / SCHEMA] = json.dumps(storyboard_schema(), indent=2) + "\n"
    readme = folder / "README.md"
    if not readme.exists():
        files[readme] = (f"# {_title(folder)}\n\nAn ovi-studio storyboard: edit `{STORY}`, then run "
                         f"`ovi-studio check {STORY}` and `ovi-studio render {STORY}`.\n")
    return _write_all(folder, files, copies)


def _write_all(folder: Path, files: dict[Path, str], copies: dict[Path, Path]) -> list[Path]:
    created: list[Path] = []  # new folders and files, removed again if anything fails
    previous = {path: path.read_bytes() for path in files if path.is_file()}  # --force overwrites
    try:
        for directory in (folder, folder / "templates"):
            missing = [p for p in (directory, *directory.parents) if not p.exists()]
            directory.mkdir(parents=True, exist_ok=True)
            created += reversed(missing)
        written = []
        for target, source in copies.items():
            if not target.exists():
                created.append(target)
            shutil.copyfile(source, target)
            written.append(target)
        for path, text in files.items():
            if path not in previous:
                created.append(path)
            path.write_text(text, encoding="utf-8")
            written.append(path)
        return written
    except OSError as exc:
        for path, data in previous.items():
            path.write_bytes(data)
        for path in reversed(created):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise UserError(f"cannot create the storyboard folder: {exc.strerror or exc} "
                        f"({exc.filename or folder}); nothing was left behind") from None


def _template_story(template: tpl.Template, title: str) -> str:
    args = CommentedMap()
    for name, spec in template.params.items():
        if spec.default is None:
            args[name] = spec.example if spec.example is not None else name.upper()
    shot = CommentedMap(id="shot-1", use=template.name)
    if args:
        shot["with"] = args
    story = CommentedMap(version=1, title=title, model="960x960_5s", shots=CommentedSeq([shot]))
    story.yaml_set_start_comment(f"yaml-language-server: $schema={SCHEMA}\n"
                                 f"Starter storyboard using the `{template.name}` template "
                                 f"({template.path.name}); see its `params:` for what you can set.")
    buffer = io.StringIO()
    new_yaml().dump(story, buffer)
    return buffer.getvalue()


def _title(folder: Path) -> str:
    return folder.absolute().name.replace("-", " ").replace("_", " ").strip() or "My storyboard"

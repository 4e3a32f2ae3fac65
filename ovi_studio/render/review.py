"""report.html: the review page of a render, beside report.json.

One static page plus its pictures in `review/` of the output folder; it opens offline from the
folder (every path is relative, nothing is fetched from anywhere else, styles and the few lines
of script are inline). At the top: a summary (shots, takes, GPU time, failures with their
reasons, the cut's quality checks) and the final cut's player with one chapter per shot. Then
one section per shot: the compiled prompt with speech and caption highlighted, lint findings,
the seam strip of an extension (the parent's last frames beside the extension's first), and
its takes side by side — each with a contact sheet, a player, the audio waveform, its quality
checks and score, settings, timings, peak memory and the `ovi-studio pick` command to copy.
"""
from __future__ import annotations

import html
import shlex
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ovi_studio.output_names import REVIEW_ASSETS, REVIEW_PAGE
from ovi_studio.media import audio as audio_io
from ovi_studio.render.artifacts import TakeLayout, atomic_target, read_json, write_text_atomic
from ovi_studio.render.quality import FAIL, frames_at
from ovi_studio.render.report import CUT_MADE, cut_cues
from ovi_studio.media.rates import FPS

PAGE, ASSETS = REVIEW_PAGE, REVIEW_ASSETS
SHEET_FRAMES = 6  # thumbnails per contact sheet
THUMB_WIDTH = 160
POSTER_WIDTH = 480
SEAM_FRAMES = 3  # frames each side of a seam strip
WAVE_SIZE = (480, 72)
_SETTINGS_SHOWN = ("steps", "solver", "shift", "video_guidance", "audio_guidance", "slg_layer",
                   "seed_frame", "color_match", "fit", "fp8", "blocks_to_swap", "transition")


def write_review(out_dir: Path, report: dict, storyboard: Path, lint: list | None = None) -> Path:
    """Write `report.html` (and its pictures) for `report` (the render's report.json)."""
    from ovi_studio.storyboard import load_storyboard
    loaded = load_storyboard(storyboard)
    assets = out_dir / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    findings = lint if lint is not None else _lint(storyboard)
    parts = [_summary(report), _final(report, out_dir)]
    for shot in report["shots"]:
        parts.append(_shot_section(shot, report, out_dir, loaded, storyboard,
                                   [d for d in findings if d.shot == shot["id"]]))
    title = (loaded.model.title if loaded.model and loaded.model.title else storyboard.stem)
    page = _PAGE.format(title=_e(title), style=_STYLE, script=_SCRIPT, body="\n".join(parts),
                        storyboard=_e(str(storyboard)))
    path = out_dir / PAGE
    write_text_atomic(path, page)
    return path


def _lint(storyboard: Path) -> list:
    from ovi_studio.lint.runner import lint_path
    try:
        return lint_path(storyboard)
    except Exception:  # the page still shows everything else
        return []


def _e(value) -> str:
    return html.escape(str(value), quote=True)


# -- summary and the cut ----------------------------------------------------------------------

def _summary(report: dict) -> str:
    takes = [t for s in report["shots"] for t in s["takes"]]
    count = lambda *states: sum(t["status"] in states for t in takes)  # noqa: E731
    gpu = sum(t.get("seconds") or 0.0 for t in takes if t["status"] == "rendered")
    failures = [f"<li><b>{_e(s['id'])}/take{t['take']}</b>: {_e(t['status'])}: {_e(t.get('reason', ''))}</li>"
                for s in report["shots"] for t in s["takes"] if t["status"] in ("failed", "skipped")]
    final = report.get("final") or {}
    if final.get("status") not in CUT_MADE:
        failures.append(f"<li><b>final cut</b>: {_e(final.get('status'))}: {_e(final.get('reason', ''))}</li>")
    qc_fails = [f"<li><b>final cut</b>: {_e(c['check'])}: {_e(c['detail'])}</li>"
                for c in final.get("qc", []) if c["status"] == FAIL]
    rows = [("storyboard", report.get("storyboard")), ("engine", (report.get("engine") or {}).get("name")),
            ("status", report.get("status")), ("shots", len(report["shots"])),
            ("takes", f"{len(takes)} ({count('rendered')} rendered, {count('cached')} up to date, "
                      f"{count('failed')} failed, {count('skipped')} skipped)"),
            ("GPU time" if (report.get("engine") or {}).get("name") == "ovi" else "render time",
             f"{gpu:.1f} s"), ("wall time", f"{report.get('seconds', 0):.1f} s"),
            ("finished", report.get("finished"))]
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    problems = "".join(failures + qc_fails)
    return (f'<section id="summary"><h2>Summary</h2><table class="kv">{table}</table>'
            + (f'<h3>Problems</h3><ul class="problems">{problems}</ul>' if problems else
               '<p class="ok">Every take rendered; every check of the cut passed.</p>') + "</section>")


def _final(report: dict, out_dir: Path) -> str:
    final = report.get("final") or {}
    if final.get("status") not in CUT_MADE or not final.get("path"):
        return '<section id="final"><h2>Final cut</h2><p>Not assembled.</p></section>'
    chapters = _chapters(final)
    # Cues go in as data, not as <track src>: a page opened from a file may not load tracks
    # (every file: URL is its own origin to the browser).
    tracks = {"chapters": [[a, b, name] for name, a, b in chapters],
              "subtitles": [[c.start, c.end, c.text] for c in cut_cues(final)]}
    links = "".join(f'<li><a href="#shot-{_e(name)}" data-seek="{a:.3f}">{_e(name)}</a> '
                    f'<span class="dim">{_clock(a)[:-4]}</span></li>' for name, a, _ in chapters)
    return (f'<section id="final"><h2>Final cut</h2>'
            f'<video id="cut" controls preload="metadata" src="{_e(final["path"])}"></video>'
            f'<script type="application/json" id="cut-tracks">{_json_in_html(tracks)}</script>'
            f'<ol class="chapters">{links}</ol>'
            f'<p class="dim">{final.get("frames")} frames, {final.get("duration_s")} s</p>'
            f'{_checks(final.get("qc"))}</section>')


def _chapters(final: dict) -> list[tuple[str, float, float]]:
    segments = final.get("segments") or []
    starts = [s["cut_start"] for s in segments] + [final["frames"]]
    return [(s["shot"], starts[i] / FPS, starts[i + 1] / FPS) for i, s in enumerate(segments)]


def _json_in_html(data) -> str:
    import json
    return json.dumps(data).replace("<", "\\u003c")


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


# -- one shot ---------------------------------------------------------------------------------

def _shot_section(shot: dict, report: dict, out_dir: Path, loaded, storyboard: Path, findings: list) -> str:
    resolved = loaded.shot(shot["id"])
    pick = (shot.get("pick") or {})
    parts = [f'<section class="shot" id="shot-{_e(shot["id"])}"><h2>{_e(shot["id"])}</h2>']
    if pick:
        parts.append(f'<p class="pick">In the cut: <b>take {pick["take"]}</b> — {_e(pick["reason"])}</p>')
    if resolved is not None:
        parts.append(f'<h3>Prompt</h3><p class="prompt">{_highlight(resolved.prompt)}</p>')
    if findings:
        items = "".join(f'<li class="{_e(d.severity.value)}"><code>{_e(d.code)}</code> '
                        f'{_e(d.severity.value)}: {_e(d.message)} <span class="dim">line {d.line}</span></li>'
                        for d in findings)
        parts.append(f'<h3>Lint</h3><ul class="lint">{items}</ul>')
    seam = _seam_strip(shot, out_dir)
    if seam:
        parts.append(seam)
    cards = "".join(_take_card(shot["id"], take, pick.get("take"), out_dir, storyboard,
                               report.get("final") or {})
                    for take in shot["takes"])
    parts.append(f'<h3>Takes</h3><div class="takes">{cards}</div></section>')
    return "".join(parts)


def _highlight(prompt: str) -> str:
    from ovi_studio.prompt import parse_prompt
    spans = parse_prompt(prompt).spans
    kinds = {"speech": "speech", "caption": "caption", "tag": "tag", "malformed_tag": "tag bad"}
    return "".join(f'<span class="{kinds[s.kind]}">{_e(s.content)}</span>' if s.kind in kinds
                   else _e(s.content) for s in spans)


def _take_card(shot_id: str, take: dict, picked: int | None, out_dir: Path, storyboard: Path,
               final: dict) -> str:
    layout = TakeLayout(out_dir / take["dir"])
    meta = read_json(layout.meta) or {}
    chosen = " chosen" if take["take"] == picked else ""
    head = (f'<h4>take {take["take"]} <span class="badge {_e(take["status"])}">{_e(take["status"])}</span>'
            + (f' <span class="badge score">score {take["qc_score"]:.0%}</span>' if "qc_score" in take else "")
            + ("" if not chosen else ' <span class="badge chosen">in the cut</span>') + "</h4>")
    body = [head, f'<p class="dim">seed {take["seed"]} · {take["mode"]}</p>']
    if take.get("extends"):
        start = take["extends"]
        body.append(f'<p class="extends">starts from {_e(start["shot"])} take {start["take"]}: '
                    f'{_e(start["reason"])}</p>')
    if take.get("reason"):
        body.append(f'<p class="reason">{_e(take["reason"])}</p>')
    if meta and layout.frames.is_file():
        (sheet, poster), wave = _contact_sheet(shot_id, take["take"], layout, meta, out_dir), \
            _waveform(shot_id, take["take"], layout, out_dir)
        body.append(f'<img class="sheet" alt="contact sheet of {_e(shot_id)} take {take["take"]}" src="{sheet}">')
        source = _player_source(shot_id, take, picked, out_dir, final, storyboard)
        body.append(f'<video controls preload="none" poster="{poster}" src="{_e(source)}"></video>')
        body.append(f'<img class="wave" alt="waveform" src="{wave}">')
    body.append(_checks([c for c in take.get("qc", [])]))
    body.append(_settings(meta, take))
    command = shlex.join(["ovi-studio", "pick", str(storyboard), shot_id, str(take["take"])])
    body.append(f'<div class="cmd"><code>{_e(command)}</code>'
                f'<button type="button" data-copy="{_e(command)}">copy</button></div>')
    return f'<div class="take{chosen}">{"".join(body)}</div>'


def _player_source(shot_id: str, take: dict, picked: int | None, out_dir: Path, final: dict,
                   storyboard: Path) -> str:
    """The take in the cut plays from the cut (a media fragment of its span); any other take
    from its viewing copy, made now (render.viewing)."""
    span = next((s for s in final.get("segments") or [] if s["shot"] == shot_id), None)
    if take["take"] == picked and span is not None and final.get("path"):
        start = span["cut_start"] / FPS
        end = start + (span["end_frame"] - span["start_frame"]) / FPS
        return f'{final["path"]}#t={start:.3f},{end:.3f}'
    from ovi_studio.render.viewing import viewing_copy
    clip = viewing_copy(out_dir / take["dir"], storyboard)
    return clip.relative_to(out_dir).as_posix() if clip else ""


def _checks(checks: list | None) -> str:
    if not checks:
        return ""
    rows = "".join(f'<tr class="{_e(c["status"])}"><td>{_e(c["check"])}</td>'
                   f'<td><span class="badge {_e(c["status"])}">{_e(c["status"])}</span></td>'
                   f'<td>{_e(c["detail"])}</td></tr>' for c in checks)
    return f'<table class="qc"><tr><th>check</th><th></th><th>measured</th></tr>{rows}</table>'


def _settings(meta: dict, take: dict) -> str:
    settings = meta.get("settings") or {}
    rows = [(k, settings[k]) for k in _SETTINGS_SHOWN if k in settings]
    size = meta.get("size") or {}
    if size:
        rows.insert(0, ("size", f'{size.get("width")}x{size.get("height")}, {size.get("frames")} frames'))
    for phase, seconds in (meta.get("timings") or {}).items():
        rows.append((f"time: {phase}", f"{seconds:.2f} s" if isinstance(seconds, (int, float)) else seconds))
    if take.get("seconds") is not None:
        rows.append(("time: take", f'{take["seconds"]:.2f} s'))
    if meta.get("peak_memory_bytes"):
        rows.append(("peak memory", f'{meta["peak_memory_bytes"] / 2**30:.2f} GiB'))
    if not rows:
        return ""
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<details><summary>settings, timings, memory</summary><table class="kv">{table}</table></details>'


# -- pictures ---------------------------------------------------------------------------------

def _asset(out_dir: Path, name: str) -> tuple[Path, str]:
    return out_dir / ASSETS / name, f"{ASSETS}/{name}"


def _fresh(asset: Path, source: Path) -> bool:
    return asset.is_file() and asset.stat().st_mtime >= source.stat().st_mtime


def _thumb(frame: np.ndarray, width: int = THUMB_WIDTH) -> Image.Image:
    image = Image.fromarray(frame)
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.BILINEAR)


def _tile(images: list[Image.Image], gap_after: int | None = None) -> Image.Image:
    gap = 6
    width = sum(i.width for i in images) + (gap if gap_after is not None else 0)
    sheet = Image.new("RGB", (width, max(i.height for i in images)), (200, 30, 30))
    x = 0
    for k, image in enumerate(images):
        sheet.paste(image, (x, 0))
        x += image.width + (gap if k == gap_after else 0)
    return sheet


def _save(image: Image.Image, path: Path) -> None:
    with atomic_target(path) as tmp:
        image.save(tmp, format="JPEG" if path.suffix == ".jpg" else "PNG", quality=85)


def _contact_sheet(shot_id: str, take: int, layout: TakeLayout, meta: dict, out_dir: Path) -> tuple[str, str]:
    """(contact sheet, player poster): evenly spaced frames, and the middle one larger."""
    path, rel = _asset(out_dir, f"{shot_id}-take{take}-sheet.jpg")
    poster, poster_rel = _asset(out_dir, f"{shot_id}-take{take}-poster.jpg")
    if not _fresh(path, layout.meta) or not _fresh(poster, layout.meta):
        size = meta["size"]
        count = size["frames"]
        wanted = [round(i * (count - 1) / (SHEET_FRAMES - 1)) for i in range(SHEET_FRAMES)]
        frames = frames_at(layout.frames, size["width"], size["height"], wanted)
        _save(_tile([_thumb(frames[i]) for i in wanted if i in frames]), path)
        _save(_thumb(frames[wanted[SHEET_FRAMES // 2]], POSTER_WIDTH), poster)
    return rel, poster_rel


def _waveform(shot_id: str, take: int, layout: TakeLayout, out_dir: Path) -> str:
    path, rel = _asset(out_dir, f"{shot_id}-take{take}-wave.png")
    if not _fresh(path, layout.meta):
        samples, _ = audio_io.read_wav(layout.audio)
        width, height = WAVE_SIZE
        image = Image.new("RGB", WAVE_SIZE, (24, 26, 32))
        draw = ImageDraw.Draw(image)
        columns = np.array_split(samples, width) if samples.size else []
        mid = height / 2
        for x, column in enumerate(columns):
            if column.size:
                top, bottom = float(np.clip(column.max(), -1, 1)), float(np.clip(column.min(), -1, 1))
                draw.line([(x, mid - top * mid), (x, mid - bottom * mid)], fill=(110, 200, 160))
        draw.line([(0, mid), (width, mid)], fill=(70, 70, 80))
        _save(image, path)
    return rel


def _seam_strip(shot: dict, out_dir: Path) -> str:
    """The parent's last frames (up to the seed frame) beside the chosen take's first kept
    frames, for an extension."""
    pick = (shot.get("pick") or {}).get("take", 0)
    take = next((t for t in shot["takes"] if t["take"] == pick), None)
    if take is None or take["mode"] != "extend":
        return ""
    layout = TakeLayout(out_dir / take["dir"])
    meta = read_json(layout.meta) or {}
    parent = meta.get("parent")
    if not parent or not layout.frames.is_file():
        return ""
    parent_layout = TakeLayout(out_dir / "shots" / parent["shot"] / f"take{parent['take']}")
    path, rel = _asset(out_dir, f"{shot['id']}-seam.jpg")
    if not _fresh(path, layout.meta) or not _fresh(path, parent_layout.meta):
        size = meta["size"]
        index = parent["index"]
        before = frames_at(parent_layout.frames, size["width"], size["height"],
                           list(range(max(0, index - SEAM_FRAMES + 1), index + 1)))
        after = frames_at(layout.frames, size["width"], size["height"], list(range(1, SEAM_FRAMES + 1)))
        tiles = [_thumb(f) for _, f in sorted(before.items())] + [_thumb(f) for _, f in sorted(after.items())]
        _save(_tile(tiles, gap_after=len(before) - 1), path)
    return (f'<h3>Seam</h3><p class="dim">{_e(parent["shot"])} take {parent["take"]} (frames up to '
            f'{parent["index"]}) | {_e(shot["id"])} take {pick} (from frame 1)</p>'
            f'<img class="seam" alt="seam strip into {_e(shot["id"])}" src="{rel}">')


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:1em 2em;background:#111418;color:#dde}
h1{margin:.2em 0}h2{border-bottom:1px solid #333;padding-bottom:.2em;margin-top:1.6em}
a{color:#8cf}.dim{color:#889}code{background:#222730;padding:.1em .3em;border-radius:3px}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.15em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #262b33}
.kv th{color:#99a;font-weight:normal}
video{max-width:100%;background:#000;display:block;margin:.4em 0}#cut{width:100%;max-height:480px}
.takes{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}
.take{flex:1 1 460px;max-width:560px;background:#181c22;border:1px solid #2a3038;border-radius:6px;padding:.6em}
.take.chosen{border-color:#4a8}.take img{max-width:100%;display:block;margin:.3em 0}
.badge{font-size:11px;padding:.1em .5em;border-radius:9px;background:#334;color:#dde}
.badge.pass,.badge.rendered,.badge.cached,.badge.chosen{background:#1d5236}.badge.fail,.badge.failed{background:#7a2020}
.badge.skip,.badge.skipped{background:#444}.badge.score{background:#2b3f66}
tr.fail td{color:#f99}.prompt{background:#181c22;padding:.6em;border-radius:6px;white-space:pre-wrap}
.speech{background:#234d32;color:#cfe;border-radius:3px}.caption{background:#283a5c;color:#cde;border-radius:3px}
.tag{color:#889}.tag.bad{color:#f77}.lint .error{color:#f88}.lint .warning{color:#fc6}
.problems li{color:#f99}.ok{color:#8d8}.pick{color:#9c9}.reason{color:#f99}
.cmd{display:flex;gap:.5em;align-items:center;margin-top:.4em}.cmd code{flex:1;overflow-x:auto;white-space:nowrap}
button{background:#2b3f66;color:#dde;border:0;border-radius:4px;padding:.2em .7em;cursor:pointer}
img.seam{max-width:100%}.chapters li{display:inline-block;margin-right:1.2em}
"""

_SCRIPT = """
(function () {
  var cut = document.getElementById('cut');
  var data = document.getElementById('cut-tracks');
  if (!cut || !data || !window.VTTCue) { return; }
  var tracks = JSON.parse(data.textContent);
  [['chapters', 'shots', 'hidden'], ['subtitles', 'dialogue', 'showing']].forEach(function (spec) {
    var track = cut.addTextTrack(spec[0], spec[1], 'en');
    tracks[spec[0]].forEach(function (c) { track.addCue(new VTTCue(c[0], c[1], c[2])); });
    track.mode = spec[2];
  });
})();
document.addEventListener('click', function (event) {
  var target = event.target;
  if (target.dataset && target.dataset.copy !== undefined) {
    var text = target.dataset.copy;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { target.textContent = 'copied'; },
                                               function () { target.textContent = 'select it'; });
    } else {
      var range = document.createRange();
      range.selectNodeContents(target.previousElementSibling);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      target.textContent = 'selected';
    }
  }
  if (target.dataset && target.dataset.seek !== undefined) {
    var cut = document.getElementById('cut');
    if (cut) { event.preventDefault(); cut.currentTime = parseFloat(target.dataset.seek); cut.scrollIntoView(); }
  }
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title} — ovi-studio review</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
<p class="dim">review of the render of <code>{storyboard}</code></p>
{body}
<script>{script}</script>
</body>
</html>
"""

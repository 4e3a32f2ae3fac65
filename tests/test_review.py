"""The review page: static, self-contained (every reference a file of the output folder), and
in a real headless Chromium: no console errors, no network requests, shot sections with their
thumbnails drawn."""
from __future__ import annotations

import shutil
import time
from html.parser import HTMLParser
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from preview_render import rendered_fixture

rendered = rendered_fixture("review")


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "poster"):
            if attrs.get(name):
                self.refs.append(attrs[name])
        if tag == "section" and attrs.get("id"):
            self.sections.append(attrs["id"])


@pytest.mark.slow
def test_page_is_self_contained(rendered):
    out, report = rendered
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _References()
    parser.feed(page)
    assert parser.sections == ["summary", "final", "shot-harbour", "shot-pier", "shot-walk", "shot-boat"]
    for ref in parser.refs:
        if ref.startswith(("#", "data:")):
            continue
        assert "://" not in ref and not ref.startswith("/"), ref
        assert (out / unquote(ref.split("#")[0])).is_file(), ref  # `#t=a,b`: a span of the cut
    # prompt highlighting, the pick command, the cut's chapters
    assert '<span class="speech">The boats are late today.</span>' in page
    assert 'class="caption"' in page
    assert f"ovi-studio pick {out.parent / 'story.yaml'} harbour 1" in page
    assert '<p class="extends">starts from pier take 0: the only take</p>' in page  # walk's take
    tracks = page.split('id="cut-tracks">')[1].split("</script>")[0]
    import json
    tracks = json.loads(tracks)
    assert [c[2] for c in tracks["chapters"]] == ["harbour", "pier", "walk", "boat"]
    assert tracks["chapters"][1][0] == pytest.approx(121 / 24)  # after the first shot's 121 frames
    assert [c[2] for c in tracks["subtitles"]] == ["Ada: The boats are late today.", "Ada: They are always late."]


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium and chromedriver are not installed")
def test_page_in_headless_chromium(rendered):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    out, _ = rendered
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,2400", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((out / "report.html").as_uri())
        deadline = time.time() + 20
        while time.time() < deadline and not driver.execute_script(
                "return document.readyState === 'complete' && "
                "Array.from(document.images).every(i => i.complete)"):
            time.sleep(0.2)
        loaded = driver.execute_script(
            "return Array.from(document.querySelectorAll('img.sheet')).map(i => i.naturalWidth)")
        cues = driver.execute_script(
            "var t = document.getElementById('cut').textTracks;"
            "return Array.from(t).map(k => k.kind + ':' + k.cues.length)")
        sections = driver.execute_script(
            "return Array.from(document.querySelectorAll('section.shot h2')).map(h => h.textContent)")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, height)  # the whole page in one picture
        shot_path = out / "review-screenshot.png"
        driver.save_screenshot(str(shot_path))
        console = driver.get_log("browser")
        import json
        requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    finally:
        driver.quit()
    assert sections == ["harbour", "pier", "walk", "boat"]
    assert cues == ["chapters:4", "subtitles:2"]
    assert len(loaded) == 5 and all(width > 0 for width in loaded)  # every take's contact sheet
    errors = [e for e in console if e["level"] == "SEVERE"]
    assert errors == []
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    picture = np.asarray(Image.open(shot_path).convert("RGB"))
    assert picture.shape[0] >= 2000 and picture.std() > 10  # a drawn page, not a blank one

"""Every page of the built book opens in a real headless Chromium: figures load, no JavaScript
error is logged, and nothing is fetched from another host.

The HTML comes from `make html` (which `make test` runs first, from the committed notebook
outputs). Chromium is Debian's (`make chromium`), driven by Playwright; no browser is downloaded.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from sdprobe.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # needs the built book and Chromium

HTML = REPO_ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a sandboxed machine without network: no background services, no GPU, no first-run UI.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_PAGES = {"genindex.html", "search.html"}  # Sphinx's generated index pages hold no content of ours
PAGE_BUDGET = 8 * 2**20  # bytes of one page's HTML: its figures and players are embedded in it
VIEWPORT = {"width": 1280, "height": 900}
# Chapters whose story is motion: the denoising loop (00, 01) and a seedling growing (03).
WITH_PLAYERS = {"00_how_stable_diffusion_works", "01_generation_process_heatmaps", "03_seedling_transplant"}

# In the page: the main column's overflow, table cells that print NaN, raw LaTeX citations.
_READING_CHECKS = """() => {
  const main = document.querySelector('main') || document.body;
  const cells = [...document.querySelectorAll('td, th')].map(c => c.textContent.trim())
      .filter(t => /^(nan|NaN|<NA>|None)$/.test(t));
  const text = document.body.innerText;
  // a report wider than the output box around it is cut there (the box scrolls sideways)
  const wide = [...document.querySelectorAll('table.sdprobe-report')]
      .filter(t => t.getBoundingClientRect().right > t.parentElement.getBoundingClientRect().right + 1
                   || [...t.querySelectorAll('td, th')].some(c => c.scrollWidth > c.clientWidth + 1))
      .map(t => (t.querySelector('caption, th') || t).textContent.trim().slice(0, 40));
  return {overflow: main.scrollWidth - main.clientWidth, page: document.documentElement.scrollWidth - window.innerWidth,
          nan: cells, latex: (text.match(/\\\\cite\\w*|\\\\citeauthor/g) || []), wide};
}"""

# In the page: after jumps of about two windows (a dragged scrollbar) and at the end, does "on this
# page" mark the section in view (the last whose heading lies above 30 % of the window; at the end,
# the last whose heading shows)? Returns the scroll positions where it does not.
_TOC_CHECK = """async () => {
  const links = [...document.querySelectorAll('#pst-page-toc-nav a[href^="#"]')];
  const inView = () => {  // at the very end of the page, the last section whose heading shows
    const end = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2;
    let best = null;
    for (const a of links) {
      const s = document.getElementById(decodeURIComponent(a.hash.slice(1)));
      const h = s && (s.querySelector('h1,h2,h3,h4,h5,h6') || s);
      if (h && h.getBoundingClientRect().top < window.innerHeight * (end ? 1 : 0.3)) best = a;
    }
    return best;
  };
  const wrong = [];
  const last = document.documentElement.scrollHeight - window.innerHeight;
  const stops = [];
  for (let y = 0; y < last; y += Math.round(window.innerHeight * 1.9)) stops.push(y);
  for (const y of [...stops, last]) {
    window.scrollTo(0, y);
    await new Promise(r => setTimeout(r, 200));
    const want = inView();
    const marked = links.filter(a => a.classList.contains('active'));
    if (want && (marked.length !== 1 || marked[0] !== want)) wrong.push(y);
  }
  return wrong;
}"""


def book_pages() -> list[Path]:
    if not (HTML / "index.html").is_file():
        return []
    return sorted(p for p in HTML.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts and p.name not in SKIP_PAGES)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail("Chromium is not installed: run `make chromium` (Debian's chromium package)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_book_was_built():
    assert (HTML / "index.html").is_file(), f"no book in {HTML}: run `make html` first"
    names = {p.relative_to(HTML).as_posix() for p in book_pages()}
    assert {"notebooks/intro.html", "notebooks/findings.html", "book/glossary.html", "book/teaching.html",
            "book/bibliography.html", "book/api.html",
            "notebooks/00_how_stable_diffusion_works.html"} <= names


def test_the_api_page_documents_every_probe_from_its_docstrings():
    page = (HTML / "book" / "api.html").read_text()
    for name in ("sdprobe.models.loading.load_pipeline", "sdprobe.probes.attention.trace_attention",
                 "sdprobe.probes.trajectory.record_trajectory", "sdprobe.probes.swap.swap_features",
                 "sdprobe.probes.hooks.PipelineHooks", "sdprobe.analysis.metrics.mask_iou"):
        assert f'id="{name}"' in page, name
    assert "Raises" in page and "[B, 4, h, w]" in page  # docstring sections and tensor shapes made it


@pytest.mark.parametrize("page", book_pages(), ids=lambda p: p.relative_to(HTML).as_posix())
def test_page_loads_its_figures_without_errors(page, server, browser):
    url = f"{server}/{page.relative_to(HTML).as_posix()}"
    errors: list[str] = []
    foreign: list[str] = []
    failed: list[str] = []
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("requestfailed", lambda req: failed.append(req.url))
    tab.on("response", lambda res: failed.append(f"{res.status} {res.url}") if res.status >= 400 else None)
    tab.on("request", lambda req: foreign.append(req.url) if _is_foreign(req.url, server) else None)
    try:
        response = tab.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
        tab.wait_for_load_state("networkidle")  # index.html redirects; MathJax loads lazily
        broken = tab.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        count = tab.eval_on_selector_all("img", "imgs => imgs.length")
        reading = tab.evaluate(_READING_CHECKS)
        players = _exercise_players(tab)
        toc_wrong = tab.evaluate(_TOC_CHECK) if page.parent.name == "notebooks" else []
    finally:
        context.close()
    assert not failed, f"failed requests: {failed}"
    assert not foreign, f"requests to other hosts: {foreign}"
    assert not broken, f"images that did not load: {broken}"
    assert not errors, f"JavaScript errors: {errors}"
    if page.parent.name == "notebooks":
        assert count > 0, "a chapter page shows no figure"
    assert reading["overflow"] <= 1 and reading["page"] <= 1, f"horizontal overflow at 1280 px: {reading}"
    assert not reading["nan"], f"table cells without a value print {reading['nan']}"
    assert not reading["latex"], f"raw LaTeX in the page: {reading['latex']}"
    assert not reading["wide"], f"reports wider than the text column: {reading['wide']}"
    assert not toc_wrong, f"'on this page' marks another section after a jump, at scroll positions {toc_wrong}"
    assert page.stat().st_size <= PAGE_BUDGET, f"{page.stat().st_size / 2**20:.1f} MiB, over the page budget"
    if page.stem in WITH_PLAYERS:
        assert players, "the denoising loop's player is missing"
    stuck = [p for p in players if not (p["slider"] and p["play"])]
    assert not stuck, f"animation players that do not change frame: {stuck}"


def _exercise_players(tab) -> list[dict]:
    """Move every animation player's slider to its last frame, then rewind it and press play: each
    must show another frame both times (matplotlib's JavaScript export: an img and a range input)."""
    results = []
    for k in range(tab.locator("div.animation").count()):
        player = tab.locator("div.animation").nth(k)
        img, slider = player.locator("img").first, player.locator("input[type=range]").first
        first = img.get_attribute("src")
        slider.evaluate("s => { s.value = s.max; s.dispatchEvent(new Event('input')); }")
        moved = img.get_attribute("src") != first
        slider.evaluate("s => { s.value = 0; s.dispatchEvent(new Event('input')); }")
        player.locator("button[title='Play']").first.click()
        played = False
        for _ in range(25):  # up to 5 s: a loaded machine may be slow to show the next frame
            tab.wait_for_timeout(200)
            if img.get_attribute("src") != first:
                played = True
                break
        player.locator("button[title='Pause']").first.click()
        results.append({"player": k, "slider": moved, "play": played})
    return results


def _is_foreign(url: str, server: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in {"http", "https", "ws", "wss"} and f"{parsed.scheme}://{parsed.netloc}" != server


# ----------------------------------------------------------------------------- reading and teaching

# Chapters with a slider over precomputed runs (guidance, DAAM's threshold, t_transplant, the layer).
WITH_SLIDERS = {"00_how_stable_diffusion_works", "01_generation_process_heatmaps", "03_seedling_transplant",
                "04_unet_feature_swap"}
#: Sentences about the book's own making, which have no place in what readers read.
BUILD_NOTES = ("An earlier version of this chapter", "lent GPU", "before its hooks were unified",
               "has not yet been run", "this session", "the previous session")

_TEACHING_CHECKS = """() => {
  const imgs = [...document.querySelectorAll('article img')].filter(i => i.clientWidth >= 64
      && !/\\.svg($|\\?)/.test(i.currentSrc || i.src));
  const soft = imgs.filter(i => i.naturalWidth < 2 * i.clientWidth - 2)
      .map(i => `${(i.alt || i.src).slice(0, 50)}: ${i.naturalWidth} px shown at ${i.clientWidth}`);
  const pathAlt = imgs.filter(i => !i.closest('.animation') && (!i.alt || /\\.(png|jpe?g)$/.test(i.alt)))
      .map(i => i.src.slice(-40));
  const h1 = document.querySelector('article h1');
  const box = document.querySelector('article .sdprobe-finding');
  const firstH2 = document.querySelector('article h2');
  const boxGap = h1 && box ? box.getBoundingClientRect().top - h1.getBoundingClientRect().bottom : null;
  const exercises = document.querySelector('section#try-it-yourself');
  const hints = exercises ? [...exercises.querySelectorAll('details.sd-dropdown summary')]
      .filter(s => /Hint/.test(s.textContent)).length : 0;
  const solutions = exercises ? [...exercises.querySelectorAll('div.admonition.dropdown')]
      .filter(d => /Solution/.test(d.querySelector('.admonition-title')?.textContent || '')).length : 0;
  // exercises are "**1. Title**" paragraphs or the items of a numbered list "1. **Title**"
  const numbered = exercises ? [...exercises.querySelectorAll('p > strong')]
      .filter(s => /^\\d+\\./.test(s.textContent.trim())).length
      + exercises.querySelectorAll(':scope > ol > li').length : 0;
  return {soft, pathAlt, boxGap, boxFirst: !!(box && (!firstH2 || box.compareDocumentPosition(firstH2) & 4)),
          hints, solutions, numbered, sliders: document.querySelectorAll('div.sdprobe-slider').length,
          findings: document.querySelectorAll('table.sdprobe-findings-table tbody tr:not(.sdprobe-chapter)').length,
          text: document.body.innerText};
}"""


@pytest.mark.parametrize("page", book_pages(), ids=lambda p: p.relative_to(HTML).as_posix())
def test_page_reads_and_teaches(page, server, browser):
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    try:
        tab.goto(f"{server}/{page.relative_to(HTML).as_posix()}", wait_until="load")
        tab.wait_for_load_state("networkidle")
        found = tab.evaluate(_TEACHING_CHECKS)
    finally:
        context.close()
    notes = [n for n in BUILD_NOTES if n in found["text"]]
    assert not notes, f"build notes in the reader's text: {notes}"
    assert not found["soft"], f"figures served below twice their displayed width: {found['soft']}"
    assert not found["pathAlt"], f"figures whose alt text is a file name: {found['pathAlt']}"
    chapter = page.parent.name == "notebooks" and page.stem[:2].isdigit()
    if chapter:
        assert found["boxGap"] is not None and found["boxFirst"] and found["boxGap"] < 60, \
            f"the chapter does not open with its finding box: {found['boxGap']}"
        assert found["numbered"] >= 3, f"no numbered exercises found ({found['numbered']})"
        assert found["hints"] >= found["numbered"] and found["solutions"] >= found["numbered"], \
            f"{found['numbered']} exercises, {found['hints']} hints, {found['solutions']} folded solutions"
    if page.stem in WITH_SLIDERS:
        assert found["sliders"] >= 1, "the chapter's slider over precomputed runs is missing"
    if page.stem == "findings":
        from sdprobe.book.findings import chapter_reports
        from sdprobe.paths import NOTEBOOKS_DIR

        rows = sum(len(r["rows"]) for r in chapter_reports(NOTEBOOKS_DIR).values())
        assert rows >= 40 and found["findings"] == rows, f"{found['findings']} of {rows} report rows listed"

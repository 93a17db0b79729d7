"""Driving the page in Debian's Chromium with Playwright: launch options, a page wrapper that records every
console error, page error and failed request, canvas pixel reads, and screenshots at two window sizes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.datadir import REPO

#: Debian's Chromium (`make setup` installs it); `playwright install` cannot download a browser here.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DIST_INDEX = REPO / "frontend" / "dist" / "index.html"
#: Screenshots of every view (git-ignored), for a person to look at.
ARTIFACTS = REPO / "tests" / "artifacts"
#: The window sizes every view is captured at; the first is the tests' working size.
SIZES = ((1280, 800), (1920, 1080))
#: The map's background colour (``BACKGROUND`` in frontend/src/map/mapview.ts).
BACKGROUND_RGB = (0xFB, 0xFB, 0xFA)


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (run `make setup`)"
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        return f"{CHROMIUM} is missing (run `make setup` as root, or `apt-get install chromium`)"
    if not DIST_INDEX.is_file():
        return f"{DIST_INDEX.relative_to(REPO)} is missing: build the page first (`make frontend`)"
    return None


def requires_browser():
    """A mark skipping a test module, with the reason, where :func:`browser_unavailable` says so (before its
    fixtures build anything)."""
    import pytest

    reason = browser_unavailable()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def chromium_path() -> str:
    return str(CHROMIUM) if CHROMIUM.is_file() else str(shutil.which("chromium"))


# In-page helpers (plain JavaScript run by page.evaluate).

#: The map view (every view of the page is in the document; the others are hidden).
MAP_VIEW = "section.map-view"

#: Functions declared at the start of the in-page helpers: ``readCanvas()`` (the map canvas's pixels, copied
#: through a fresh 2-D canvas: {canvas, width, height, rgba}) and ``canvasHash()`` (FNV-1a over its pixels).
CANVAS_FUNCTIONS_JS = """
function readCanvas() {
  const c = document.querySelector('section.map-view .map-canvas');
  const copy = document.createElement('canvas');
  copy.width = c.width;
  copy.height = c.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(c, 0, 0);
  return { canvas: c, width: c.width, height: c.height, rgba: ctx.getImageData(0, 0, c.width, c.height).data };
}
function canvasHash() {
  const px = new Uint32Array(readCanvas().rgba.buffer);
  let h = 0x811c9dc5;
  for (let i = 0; i < px.length; i++) h = Math.imul(h ^ px[i], 0x01000193);
  return h >>> 0;
}
"""


def with_canvas_functions(parameter: str, body: str) -> str:
    """An arrow function ``(parameter) => { body }`` that may call ``readCanvas`` and ``canvasHash``."""
    return f"({parameter}) => {{{CANVAS_FUNCTIONS_JS}{body}}}"


#: How many canvas pixels differ from the background, and how many distinct colours they have.
CANVAS_INK_JS = with_canvas_functions(
    "bg",
    """
  const { width, height, rgba } = readCanvas();
  let ink = 0;
  const colours = new Set();
  for (let i = 0; i < rgba.length; i += 4) {
    const d = Math.max(Math.abs(rgba[i] - bg[0]), Math.abs(rgba[i + 1] - bg[1]), Math.abs(rgba[i + 2] - bg[2]));
    if (d > 8) {
      ink++;
      if (colours.size < 4096) colours.add((rgba[i] << 16) | (rgba[i + 1] << 8) | rgba[i + 2]);
    }
  }
  return { width, height, ink, total: width * height, colours: colours.size };
""",
)

#: For each neuron id: how far (max channel difference) the canvas pixel under its drawn centre is from the
#: background; null when the app says it is not drawn or the centre is outside the canvas.
CENTRE_INK_JS = with_canvas_functions(
    "[ids, bg]",
    """
  const { canvas, width, height, rgba } = readCanvas();
  const rect = canvas.getBoundingClientRect();
  const sx = width / rect.width;
  const sy = height / rect.height;
  return ids.map((id) => {
    const p = window.conceptevo.clientPosition(id);
    if (!p) return null;
    const x = Math.round((p[0] - rect.left) * sx);
    const y = Math.round((p[1] - rect.top) * sy);
    if (x < 0 || y < 0 || x >= width || y >= height) return null;
    const i = 4 * (y * width + x);
    return Math.max(Math.abs(rgba[i] - bg[0]), Math.abs(rgba[i + 1] - bg[1]), Math.abs(rgba[i + 2] - bg[2]));
  });
""",
)

#: A hash of the map canvas's pixels.
CANVAS_HASH_JS = with_canvas_functions("", "return canvasHash();")

#: Two animation frames: whatever the last state change drew is on the canvas.
TWO_FRAMES_JS = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


class Ui:
    """One browser page on the app, recording everything that went wrong in it.

    ``problems`` collects console messages of type error, uncaught page errors, requests that failed at the
    network level and responses with an HTTP error status; :meth:`assert_no_problems` ends every test.
    """

    def __init__(self, page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.problems: list[str] = []
        #: Requests the browser cancelled because the test itself loaded another document (not problems).
        self.cancelled_by_navigation: list[str] = []
        self._navigating = False
        #: The map view, and the tooltip now shown (each view has its own, hidden while not hovering).
        self.map = page.locator(MAP_VIEW)
        self.tooltip = page.locator("[data-testid=tooltip]:visible")
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    def _on_request_failed(self, request) -> None:
        line = f"request failed: {request.method} {request.url}: {request.failure}"
        # Allowed: a request still in flight when the test loads another document (goto, reload) is cancelled
        # by the browser and reported as failed with net::ERR_ABORTED. The page polls /api/jobs every second,
        # so a reload catches one in flight now and then; that is the navigation, not a fault of the page.
        if self._navigating and request.failure == "net::ERR_ABORTED":
            self.cancelled_by_navigation.append(line)
        else:
            self.problems.append(line)

    def _on_response(self, response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def _on_console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location})")

    # ---- navigation and waiting ---------------------------------------------------------------------------

    def goto(self, path: str = "/") -> None:
        self._navigating = True
        try:
            self.page.goto(self.base_url + path)
        finally:
            self._navigating = False
        self.wait_idle()

    def reload(self) -> None:
        self._navigating = True
        try:
            self.page.reload()
        finally:
            self._navigating = False
        self.wait_idle()

    def wait_idle(self, timeout_ms: float = 30_000) -> None:
        """Until the app loaded and shows the current state, nothing loading or gliding, and it is drawn."""
        self.page.wait_for_function(
            "() => window.conceptevo !== undefined && window.conceptevo.idle()", timeout=timeout_ms
        )
        self.page.evaluate(TWO_FRAMES_JS)

    def wait_until(self, js_predicate: str, timeout_ms: float = 30_000, arg: Any = None) -> Any:
        return self.page.wait_for_function(js_predicate, arg=arg, timeout=timeout_ms).json_value()

    def app(self, call: str, arg: Any = None) -> Any:
        """``window.conceptevo.<call>``, e.g. ``ui.app("state()")`` or ``ui.app("clientPosition(x)", 12)``."""
        if arg is None:
            return self.page.evaluate(f"() => window.conceptevo.{call}")
        return self.page.evaluate(f"(x) => window.conceptevo.{call}", arg)

    def state(self) -> dict:
        return self.app("state()")

    def click_tick(self, epoch: int, scope=None) -> None:
        """Click the slider where the tick of ``epoch`` is (the slider's SVG takes the pointer, not the ticks);
        the map view's slider, or the one inside the locator ``scope`` (a comparison side)."""
        within = self.map if scope is None else scope
        box = within.locator(f"[data-testid=slider] g.tick[data-epoch='{epoch}'] circle.dot").bounding_box()
        assert box is not None, f"no tick for epoch {epoch}"
        self.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    # ---- canvas ---------------------------------------------------------------------------------------------

    def canvas_hash(self) -> int:
        return self.page.evaluate(CANVAS_HASH_JS)

    def canvas_ink(self) -> dict:
        return self.page.evaluate(CANVAS_INK_JS, list(BACKGROUND_RGB))

    def centre_ink(self, neuron_ids: list[int]) -> list[int | None]:
        return self.page.evaluate(CENTRE_INK_JS, [neuron_ids, list(BACKGROUND_RGB)])

    # ---- screenshots ----------------------------------------------------------------------------------------

    def screenshot(self, view: str, prepare: Callable[[], None] | None = None) -> list[Path]:
        """Save ``tests/artifacts/<view>-<W>x<H>.png`` at every size of :data:`SIZES`, then return to the
        first size. ``prepare`` runs after each resize (e.g. to hover a point again where it is now)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        saved = []
        for width, height in (*SIZES, SIZES[0]):
            self.page.set_viewport_size({"width": width, "height": height})
            self.wait_idle()
            if prepare is not None:
                prepare()
            if len(saved) < len(SIZES):
                path = ARTIFACTS / f"{view}-{width}x{height}.png"
                self.page.screenshot(path=str(path))
                saved.append(path)
        for path in saved:
            assert path.stat().st_size > 5_000, f"{path} is suspiciously small"
        return saved

    # ---- the end of every test ------------------------------------------------------------------------------

    def assert_no_problems(self) -> None:
        problems = list(self.problems)
        assert not problems, f"{len(problems)} problem(s) in the page:\n" + "\n".join(problems[:30])

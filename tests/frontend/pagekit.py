"""What the browser tests need to know about ConceptEvo's page and API: neuron names, binary point columns,
points that can be hovered, images that must have loaded, downloaded files, and where the comparison's maps
draw their points."""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from tests.frontend.browser import BACKGROUND_RGB, Ui, with_canvas_functions


def run_url(space: int, run: int, epoch: int | None = None, **extra: object) -> str:
    """The page's URL of a run (and epoch) in a space, as the page writes it (``/?space=1&run=2&epoch=3``)."""
    query = f"/?space={space}&run={run}"
    if epoch is not None:
        query += f"&epoch={epoch}"
    for key, value in extra.items():
        query += f"&{key}={value}"
    return query


@dataclass
class Neurons:
    """A run's neurons as the API describes them."""

    ids: list[int]
    layer_idx: dict[int, int]
    channel: dict[int, int]
    layers: dict[int, str]
    class_names: list[str]

    @classmethod
    def of(cls, server, run_id: int) -> Neurons:
        table = server.get(f"/api/runs/{run_id}/neurons")
        layers = server.get(f"/api/runs/{run_id}/layers")
        run = server.get(f"/api/runs/{run_id}")
        dataset = server.get(f"/api/datasets/{run['dataset_id']}")
        ids = table["neuron_id"]
        return cls(
            ids=ids,
            layer_idx=dict(zip(ids, table["layer_idx"], strict=True)),
            channel=dict(zip(ids, table["channel"], strict=True)),
            layers={layer["idx"]: layer["name"] for layer in layers},
            class_names=dataset["class_names"],
        )

    def name(self, neuron_id: int) -> str:
        """``layer:channel``, as the page titles a neuron."""
        return f"{self.layers[self.layer_idx[neuron_id]]}:{self.channel[neuron_id]}"

    def per_layer(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for layer in self.layer_idx.values():
            counts[layer] = counts.get(layer, 0) + 1
        return counts

    def find(self, layer_name: str, channel: int) -> int:
        layer = next(idx for idx, name in self.layers.items() if name == layer_name)
        return next(n for n in self.ids if self.layer_idx[n] == layer and self.channel[n] == channel)


def fetch_points(server, space_id: int, snapshot_id: int) -> dict[int, tuple[float, float]]:
    """A snapshot's positions from the API's binary columns: neuron id → (x, y)."""
    response = httpx.get(f"{server.url}/api/spaces/{space_id}/snapshots/{snapshot_id}/points", timeout=30)
    response.raise_for_status()
    body = response.content
    (length,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4 : 4 + length])
    n, offset, columns = header["n"], 4 + length, {}
    for column in header["columns"]:
        dtype = {"int32": "<i4", "float32": "<f4"}[column["dtype"]]
        columns[column["name"]] = np.frombuffer(body, dtype=dtype, count=n, offset=offset)
        offset += 4 * n
    return {
        int(i): (float(x), float(y))
        for i, x, y in zip(columns["neuron_id"], columns["x"], columns["y"], strict=True)
    }


#: The shown point farthest from every other, among those the pointer can reach (the map's overlay is the
#: element under it: not under the legend or a label); ``prefer`` is taken when it qualifies.
_ISOLATED_POINT_JS = """
([allowed, prefer]) => {
  const ce = window.conceptevo;
  const p = ce.points();
  const ok = allowed ? new Set(allowed) : null;
  const pos = [];
  for (const id of p.neuronId) {
    const q = ce.clientPosition(id);
    if (q) pos.push([id, q]);
  }
  const reachable = ([id, q]) => {
    if (ok && !ok.has(id)) return false;
    const el = document.elementFromPoint(q[0], q[1]);
    return el !== null && el.closest('section.map-view .map-overlay') !== null && el.closest('.map-label') === null;
  };
  let best = null;
  for (const entry of pos) {
    if (!reachable(entry)) continue;
    const [id, q] = entry;
    let gap = Infinity;
    for (const [other, r] of pos) if (other !== id) gap = Math.min(gap, Math.hypot(q[0] - r[0], q[1] - r[1]));
    const found = { id, x: q[0], y: q[1], gap };
    if (id === prefer) return found;
    if (!best || gap > best.gap) best = found;
  }
  return best;
}
"""


def isolated_point(ui: Ui, allowed: list[int] | None = None, prefer: int | None = None) -> dict:
    """``{id, x, y, gap}``: a point to hover or click (client coordinates), at least 4 px from any other."""
    point = ui.page.evaluate(_ISOLATED_POINT_JS, [allowed, prefer])
    assert point is not None, "no point of the map can be reached by the pointer"
    assert point["gap"] >= 4, f"every reachable point overlaps another: {point}"
    return point


def hover_until_tooltip(ui: Ui, point: dict) -> None:
    """Move the pointer onto a point (from a little aside, so the page sees a move) until the tooltip shows."""
    ui.page.mouse.move(point["x"] - 3, point["y"] - 3)
    ui.page.mouse.move(point["x"], point["y"])
    ui.tooltip.wait_for(state="visible")


def images_loaded(ui: Ui, selector: str) -> list[int]:
    """``naturalWidth`` of every image matching ``selector`` (0: not loaded or broken)."""
    return ui.page.eval_on_selector_all(selector, "els => els.map(e => e.complete ? e.naturalWidth : 0)")


def wait_images_loaded(ui: Ui, selector: str, count: int, timeout_ms: float = 20_000) -> None:
    """Until ``count`` images match ``selector`` and every one has loaded with ``naturalWidth > 0``."""
    ui.wait_until(
        """([sel, n]) => { const els = [...document.querySelectorAll(sel)];
           return els.length === n && els.every(e => e.complete && e.naturalWidth > 0); }""",
        arg=[selector, count],
        timeout_ms=timeout_ms,
    )
    widths = images_loaded(ui, selector)
    assert len(widths) == count and all(w > 0 for w in widths), widths


#: Record, once per animation frame for 3 s, whether the map glides, a hash of its canvas, and where one
#: neuron is drawn: ``window.__samples = {list: [{gliding, hash, pos}], done}``.
SAMPLE_FRAMES_JS = with_canvas_functions(
    "neuronId",
    """
  const samples = { list: [], done: false };
  window.__samples = samples;
  const t0 = performance.now();
  const tick = () => {
    const s = window.conceptevo.stats();
    samples.list.push({ gliding: s.gliding, hash: canvasHash(), pos: window.conceptevo.clientPosition(neuronId) });
    if (performance.now() - t0 < 3000) requestAnimationFrame(tick);
    else samples.done = true;
  };
  requestAnimationFrame(tick);
""",
)


# ---- more API data ------------------------------------------------------------------------------------------


@dataclass
class SnapshotPoints:
    """One snapshot's points in a space, as the API's JSON form gives them (NaN positions as None)."""

    neuron_id: list[int]
    layer_idx: list[int]
    x: list[float | None]
    y: list[float | None]

    @classmethod
    def of(cls, server, space_id: int, snapshot_id: int) -> SnapshotPoints:
        body = server.get(f"/api/spaces/{space_id}/snapshots/{snapshot_id}/points?format=json")
        return cls(body["neuron_id"], body["layer_idx"], body["x"], body["y"])

    def placed(self) -> list[tuple[int, int, float, float]]:
        """(neuron id, layer index, x, y) of every point with a finite position."""
        return [
            (n, layer, x, y)
            for n, layer, x, y in zip(self.neuron_id, self.layer_idx, self.x, self.y, strict=True)
            if x is not None and y is not None
        ]


def space_snapshot(server, space_id: int, run_id: int, epoch: int) -> int:
    """The snapshot id of a run's epoch placed in a space (an assertion error when it is not placed)."""
    space = server.get(f"/api/spaces/{space_id}")
    found = [s["snapshot_id"] for s in space["snapshots"] if s["run_id"] == run_id and s["epoch"] == epoch]
    assert found, f"run {run_id} epoch {epoch} is not placed in space {space_id}"
    return found[0]


def computed_epochs(server, space_id: int, run_id: int) -> list[int]:
    """The epochs of a run placed in a space now, ascending."""
    space = server.get(f"/api/spaces/{space_id}")
    return sorted(s["epoch"] for s in space["snapshots"] if s["run_id"] == run_id)


# ---- downloads ------------------------------------------------------------------------------------------------


def download(ui: Ui, click: Callable[[], None]) -> tuple[str, bytes]:
    """The file the page downloads when ``click()`` runs: its suggested name and its bytes."""
    with ui.page.expect_download() as info:
        click()
    dl = info.value
    assert dl.failure() is None, dl.failure()
    return dl.suggested_filename, Path(dl.path()).read_bytes()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (an assertion error when it is not a PNG)."""
    assert data[:8] == PNG_SIGNATURE, f"not a PNG: {data[:16]!r}"
    assert data[12:16] == b"IHDR", data[:32]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def read_csv(data: bytes) -> tuple[list[str], list[list[str]]]:
    """A downloaded CSV's header and rows."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows, "the CSV is empty"
    return rows[0], rows[1:]


# ---- the comparison's maps ------------------------------------------------------------------------------------

#: The d3 zoom transform of each comparison map's overlay ({k, x, y}, as d3 stores it on the element).
COMPARE_ZOOMS_JS = """
() => ['a', 'b'].map((side) => {
  const t = document.querySelector(`[data-testid=compare-${side}] svg.map-overlay`).__zoom;
  return t ? { k: t.k, x: t.x, y: t.y } : null;
})
"""

#: For a canvas (selector) and positions in CSS pixels inside it: how far (max channel difference) the pixel
#: there is from the background; null outside the canvas.
INK_AT_JS = """
([selector, positions, bg]) => {
  const c = document.querySelector(selector);
  const copy = document.createElement('canvas');
  copy.width = c.width;
  copy.height = c.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(c, 0, 0);
  const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
  const rect = c.getBoundingClientRect();
  const sx = c.width / rect.width;
  const sy = c.height / rect.height;
  return positions.map(([px, py]) => {
    const x = Math.round(px * sx);
    const y = Math.round(py * sy);
    if (x < 0 || y < 0 || x >= c.width || y >= c.height) return null;
    const i = 4 * (y * c.width + x);
    return Math.max(Math.abs(rgba[i] - bg[0]), Math.abs(rgba[i + 1] - bg[1]), Math.abs(rgba[i + 2] - bg[2]));
  });
}
"""

#: The margin (CSS px) a map keeps around the data extent at zoom 1 (``MARGIN`` in frontend/src/map/mapview.ts)
#: and the padding of that extent (``paddedExtent`` in frontend/src/map/extent.ts).
MAP_MARGIN = 28
EXTENT_PADDING = 0.04


@dataclass
class CompareMap:
    """Where one comparison map draws data coordinates, as the page computes it: the padded extent of the
    space's base snapshot and both sides' points, fitted into the map with equal scales and centred (the
    comparison's maps keep no legend column), then the map's d3 zoom transform.

    Rebuilt from constants of the page, so :meth:`check` compares it with where the page draws something (a
    ring) before a test relies on it."""

    side: str
    left: float
    top: float
    width: int
    height: int
    base_k: float
    base_x: float
    base_y: float
    k: float
    tx: float
    ty: float

    @classmethod
    def read(cls, ui: Ui, side: str, extent_of: list[SnapshotPoints]) -> CompareMap:
        xs = [x for points in extent_of for _n, _l, x, _y in points.placed()]
        ys = [y for points in extent_of for _n, _l, _x, y in points.placed()]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        px = max((x1 - x0) * EXTENT_PADDING, 1e-3)
        py = max((y1 - y0) * EXTENT_PADDING, 1e-3)
        x0, x1, y0, y1 = x0 - px, x1 + px, y0 - py, y1 + py
        rect = ui.page.locator(f"[data-testid=compare-{side}] .map").bounding_box()
        assert rect is not None
        width, height = max(1, math.floor(rect["width"])), max(1, math.floor(rect["height"]))
        w, h = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
        k = max(min((width - 2 * MAP_MARGIN) / w, (height - 2 * MAP_MARGIN) / h), 1e-9)
        zoom = ui.page.evaluate(COMPARE_ZOOMS_JS)[0 if side == "a" else 1] or {"k": 1, "x": 0, "y": 0}
        return cls(
            side=side,
            left=rect["x"],
            top=rect["y"],
            width=width,
            height=height,
            base_k=k,
            base_x=(width - w * k) / 2 - x0 * k,
            base_y=(height - h * k) / 2 - y0 * k,
            k=zoom["k"],
            tx=zoom["x"],
            ty=zoom["y"],
        )

    def to_css(self, x: float, y: float) -> tuple[float, float]:
        """Data → CSS pixels inside the map."""
        return (
            self.k * (x * self.base_k + self.base_x) + self.tx,
            self.k * (y * self.base_k + self.base_y) + self.ty,
        )

    def to_data(self, cx: float, cy: float) -> tuple[float, float]:
        """CSS pixels inside the map → data."""
        return (
            ((cx - self.tx) / self.k - self.base_x) / self.base_k,
            ((cy - self.ty) / self.k - self.base_y) / self.base_k,
        )

    def to_client(self, x: float, y: float) -> tuple[float, float]:
        cx, cy = self.to_css(x, y)
        return self.left + cx, self.top + cy

    def px(self) -> float:
        """One CSS pixel in data units."""
        return 1 / (self.k * self.base_k)

    def ring(self, ui: Ui, ring: str) -> tuple[float, float] | None:
        """Where the page draws a ring (``selected-ring``, ``hover-ring``, ``linked-ring``) on this map (CSS
        pixels inside it), or None when it is hidden."""
        return ui.page.evaluate(
            """([side, cls]) => {
                 const r = document.querySelector(`[data-testid=compare-${side}] svg.map-overlay .${cls}`);
                 return r && r.style.display !== 'none' && r.getAttribute('cx') !== null
                   ? [Number(r.getAttribute('cx')), Number(r.getAttribute('cy'))] : null; }""",
            [self.side, ring],
        )

    def check(self, ui: Ui, ring: str, at: tuple[float, float]) -> None:
        """The page draws ``ring`` where this geometry puts data point ``at`` (to 0.5 px)."""
        drawn = self.ring(ui, ring)
        expected = self.to_css(*at)
        assert drawn is not None, f"no {ring} on map {self.side}"
        assert math.dist(drawn, expected) < 0.5, (
            f"map {self.side} draws its {ring} at {drawn}, the tests' geometry expects {expected}: "
            "tests/frontend/pagekit.py CompareMap is out of date with frontend/src/map (margin, padding, inset?)"
        )

    def ink_at(self, ui: Ui, css_positions: list[tuple[float, float]]) -> list[int | None]:
        """How far from the background the map's canvas is at each position (CSS pixels inside the map)."""
        return ui.page.evaluate(
            INK_AT_JS,
            [
                f"[data-testid=compare-{self.side}] canvas.map-canvas",
                [list(p) for p in css_positions],
                list(BACKGROUND_RGB),
            ],
        )


#: Both comparison sides show a run and an epoch.
_COMPARE_SHOWN_JS = """() => { const s = window.conceptevo.state();
  return s.view === 'compare' && s.epoch !== null && s.epochB !== null
    && ['a', 'b'].every((k) => document.querySelector(`[data-testid=compare-${k}] .side-head b`)); }"""


def settle_compare(ui: Ui) -> None:
    """Until the comparison shows both sides, is idle and its maps have finished gliding. (The page's
    ``idle()`` alone is not enough here: the comparison's ``idle`` starts true before anything is loaded,
    and its maps' glides are not counted.)"""
    ui.wait_until(_COMPARE_SHOWN_JS)
    ui.wait_idle()
    ui.page.wait_for_timeout(450)  # the comparison maps glide for 380 ms
    ui.wait_idle()


def open_compare(ui: Ui, query: str) -> dict:
    """Open ``/compare?<query>`` and :func:`settle_compare`; returns the state."""
    ui.goto(f"/compare?{query}")
    settle_compare(ui)
    return ui.state()

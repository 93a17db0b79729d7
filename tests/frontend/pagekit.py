"""What the browser tests need to know about ConceptEvo's page and API: neuron names, binary point columns,
points that can be hovered, images that must have loaded."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import httpx
import numpy as np

from tests.frontend.browser import Ui, with_canvas_functions


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

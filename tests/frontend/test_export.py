"""Exports in a real Chromium: the map (map view and either comparison side) as a PNG at twice its size
with its legend, and the visible points as CSV (one row per point shown, checked against the page's points
and the API's neurons). The ranking's CSV and the charts' SVG are tested with their views
(test_importance.py, test_health.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.frontend.browser import BACKGROUND_RGB, requires_browser
from tests.frontend.pagekit import (
    COMPARE_ZOOMS_JS,
    CompareMap,
    Neurons,
    SnapshotPoints,
    download,
    open_compare,
    png_size,
    read_csv,
    run_url,
    settle_compare,
    space_snapshot,
)

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]

POINTS_HEADER = ["neuron_id", "run", "epoch", "layer", "channel", "x", "y"]


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 3) -> int:
    """How many pixels are within ``tol`` of a colour in every channel."""
    return int((np.abs(pixels - np.array(rgb)).max(axis=-1) <= tol).sum())


def _css_rgb(value: str) -> tuple[int, int, int]:
    """``rgb(r, g, b)`` as computed by the browser."""
    r, g, b = (int(float(v)) for v in value[value.index("(") + 1 : value.index(")")].split(",")[:3])
    return r, g, b


def _ink(pixels: np.ndarray) -> int:
    return int((np.abs(pixels - np.array(BACKGROUND_RGB)).max(axis=-1) > 8).sum())


def _check_rows(rows: list[list[str]], run_name: str, epoch: int, neurons: Neurons, xy: dict) -> list[int]:
    """Every CSV row names a neuron of the run with its layer, channel and shown position; returns the ids."""
    ids = []
    for row in rows:
        assert len(row) == len(POINTS_HEADER), row
        n = int(row[0])
        assert row[1:5] == [
            run_name,
            str(epoch),
            neurons.layers[neurons.layer_idx[n]],
            str(neurons.channel[n]),
        ]
        assert (float(row[5]), float(row[6])) == xy[n], row
        ids.append(n)
    assert len(set(ids)) == len(ids), "a neuron is listed twice"
    return ids


def test_the_map_exports_a_png_at_twice_its_size_with_its_legend(ui, server, demo_world):
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    run_id = space["base_run_id"]
    neurons = Neurons.of(server, run_id)
    hidden = max(neurons.layers)  # the last layer, switched off in the legend
    ui.goto(run_url(space["id"], run_id, space["base_epoch"], hide=hidden))
    canvas = ui.map.locator("canvas.map-canvas").evaluate("c => [c.width, c.height]")
    box = ui.map.locator(".map").bounding_box()
    swatches = ui.map.locator("[data-testid=legend] button[data-layer]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.layer), e.classList.contains('off'),"
        " getComputedStyle(e.querySelector('.swatch')).backgroundColor])"
    )
    assert [layer for layer, off, _c in swatches if off] == [hidden]

    name, data = download(ui, lambda: ui.map.get_by_test_id("export-png").click())
    run_name = server.get(f"/api/runs/{run_id}")["name"]
    assert name == f"conceptevo-{run_name}-epoch{space['base_epoch']}.png"
    width, height = png_size(data)
    assert (
        (width, height) == (2 * canvas[0], 2 * canvas[1]) == (2 * int(box["width"]), 2 * int(box["height"]))
    )
    pixels = _rgb(data)
    assert pixels.shape == (height, width, 3)
    # The points are drawn (the map is wider than three legend columns, so they keep clear of the legend).
    assert _ink(pixels[:, width // 4 :]) > 0.005 * pixels[:, width // 4 :].size / 3
    # Top left, at 2×: the title in dark ink and the legend, one dot per shown layer in its colour.
    legend = pixels[: 2 * (60 + 17 * len(swatches)), : 2 * 220]
    assert _near(legend, (0x1D, 0x1D, 0x1B), tol=40) > 100, "no title or legend text in the PNG's corner"
    for layer, off, colour in swatches:
        found = _near(legend, _css_rgb(colour))
        if off:
            assert found == 0, f"the hidden layer {neurons.layers[layer]} is in the PNG's legend"
        else:
            assert found > 30, f"layer {neurons.layers[layer]}'s colour {colour} is not in the PNG's legend"
    ui.assert_no_problems()


def test_the_maps_csv_lists_exactly_the_points_it_shows(ui, server, demo_world):
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    run_id = space["base_run_id"]
    epoch = space["base_epoch"]
    neurons = Neurons.of(server, run_id)
    run_name = server.get(f"/api/runs/{run_id}")["name"]
    ui.goto(run_url(space["id"], run_id, epoch))
    shown = ui.app("points()")
    xy = dict(zip(shown["neuronId"], zip(shown["x"], shown["y"], strict=True), strict=True))

    # The whole map: every point.
    name, data = download(ui, lambda: ui.map.get_by_test_id("export-csv").click())
    assert name == f"conceptevo-{run_name}-epoch{epoch}-points.csv"
    header, rows = read_csv(data)
    assert header == POINTS_HEADER
    assert sorted(_check_rows(rows, run_name, epoch, neurons, xy)) == sorted(shown["neuronId"])

    # Zoomed in, one layer hidden: the points inside the view, of the shown layers.
    hidden = min(neurons.layers)
    x0, x1, y0, y1 = min(shown["x"]), max(shown["x"]), min(shown["y"]), max(shown["y"])
    box = [x0 + 0.2 * (x1 - x0), y0 + 0.2 * (y1 - y0), x0 + 0.6 * (x1 - x0), y0 + 0.6 * (y1 - y0)]
    zoom = ",".join(f"{v:.5g}" for v in box)
    ui.goto(run_url(space["id"], run_id, epoch, hide=hidden, zoom=zoom))
    overlay = ui.map.locator(".map-overlay").bounding_box()
    client = ui.page.evaluate(
        "(ids) => ids.map((i) => window.conceptevo.clientPosition(i))", shown["neuronId"]
    )

    def inside(margin: float) -> set[int]:
        return {
            n
            for n, p in zip(shown["neuronId"], client, strict=True)
            if p is not None
            and neurons.layer_idx[n] != hidden
            and overlay["x"] - margin <= p[0] <= overlay["x"] + overlay["width"] + margin
            and overlay["y"] - margin <= p[1] <= overlay["y"] + overlay["height"] + margin
        }

    _name, data = download(ui, lambda: ui.map.get_by_test_id("export-csv").click())
    header, rows = read_csv(data)
    assert header == POINTS_HEADER
    listed = set(_check_rows(rows, run_name, epoch, neurons, xy))
    assert inside(-1) <= listed <= inside(1), (
        f"the CSV lists {len(listed)} points, the map shows {len(inside(-1))}–{len(inside(1))}: "
        f"missing {sorted(inside(-1) - listed)[:10]}, extra {sorted(listed - inside(1))[:10]}"
    )
    assert 0 < len(listed) < len(shown["neuronId"]) - neurons.per_layer()[hidden]
    ui.assert_no_problems()


def test_each_comparison_side_exports_its_map_and_its_visible_points(ui, server, demo_world):
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    run_a = space["base_run_id"]
    run_b = demo_world.runs["high-lr"]
    state = open_compare(ui, f"space={space['id']}&run={run_a}&runB={run_b}")
    sides = {"a": (run_a, state["epoch"]), "b": (run_b, state["epochB"])}
    base = SnapshotPoints.of(server, space["id"], space["base_snapshot_id"])
    points = {
        side: SnapshotPoints.of(server, space["id"], space_snapshot(server, space["id"], run, epoch))
        for side, (run, epoch) in sides.items()
    }

    def button(side: str, text: str):
        return ui.page.locator(f"[data-testid=compare-{side}] .side-head button", has_text=text)

    def export_csv(side: str) -> tuple[set[int], dict]:
        run, epoch = sides[side]
        run_name = server.get(f"/api/runs/{run}")["name"]
        name, data = download(ui, lambda: button(side, "CSV").click())
        assert name == f"conceptevo-{run_name}-epoch{epoch}-points.csv"
        header, rows = read_csv(data)
        assert header == POINTS_HEADER
        xy = {n: (x, y) for n, _l, x, y in points[side].placed()}
        return set(_check_rows(rows, run_name, epoch, Neurons.of(server, run), xy)), xy

    for side, (run, epoch) in sides.items():
        run_name = server.get(f"/api/runs/{run}")["name"]
        canvas = ui.page.locator(f"[data-testid=compare-{side}] canvas.map-canvas").evaluate(
            "c => [c.width, c.height]"
        )
        name, data = download(ui, lambda side=side: button(side, "PNG").click())
        assert name == f"conceptevo-{run_name}-epoch{epoch}.png"
        assert png_size(data) == (2 * canvas[0], 2 * canvas[1])
        pixels = _rgb(data)
        assert _ink(pixels) > 0.005 * pixels.size / 3, f"the PNG of map {side} is blank"
        assert _near(pixels[:60, : 2 * 200], (0x1D, 0x1D, 0x1B), tol=40) > 50, f"no title on map {side}'s PNG"
        # Not zoomed: every placed point of the side's snapshot.
        listed, xy = export_csv(side)
        assert listed == set(xy), f"map {side}: the CSV lists {len(listed)} points of {len(xy)}"

    # Zoomed (by the wheel on map A, so map B follows): B's CSV lists the points inside B's view.
    a = ui.page.locator("[data-testid=compare-a] .map").bounding_box()
    ui.page.mouse.move(a["x"] + 0.45 * a["width"], a["y"] + 0.5 * a["height"])
    ui.page.mouse.wheel(0, -400)
    ui.wait_until("() => window.conceptevo.state().zoom !== null")
    settle_compare(ui)
    zooms = ui.page.evaluate(COMPARE_ZOOMS_JS)
    assert zooms[0] == zooms[1] and zooms[1]["k"] > 1.2, zooms
    m = CompareMap.read(ui, "b", [base, points["a"], points["b"]])
    listed, xy = export_csv("b")

    def inside(margin: float) -> set[int]:
        return {
            n
            for n, p in ((n, m.to_css(*q)) for n, q in xy.items())
            if -margin <= p[0] <= m.width + margin and -margin <= p[1] <= m.height + margin
        }

    assert inside(-1) <= listed <= inside(1), (len(inside(-1)), len(listed), len(inside(1)))
    assert 0 < len(listed) < len(xy)
    ui.assert_no_problems()

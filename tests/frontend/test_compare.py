"""The comparison view in a real Chromium: two runs' maps side by side with linked zoom and pan, a brushed
region lit and counted on both maps (checked against the API's points and the canvases' pixels), neurons
pinned on both sides, and run B's epoch following run A's by epoch or by accuracy milestone.

The maps are not on the page's test handle, so where they draw data is rebuilt from the API's points and
each map's d3 zoom transform (:class:`~tests.frontend.pagekit.CompareMap`), checked first against the
rings the page draws around pinned neurons.
"""

from __future__ import annotations

import math

import pytest

from tests.frontend.browser import requires_browser
from tests.frontend.pagekit import (
    COMPARE_ZOOMS_JS,
    CompareMap,
    Neurons,
    SnapshotPoints,
    computed_epochs,
    open_compare,
    settle_compare,
    space_snapshot,
    wait_images_loaded,
)

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]

#: A point counts as drawn in full colour when the pixel under its centre is this far from the background
#: (largest channel difference); points outside a brushed region are mixed 78 % into the background.
VIVID = 70
#: Points of the other kind (lit / faded) closer than this (CSS px) may cover a point's centre.
COVER_PX = 12


def _pair(server, demo_world) -> tuple[int, int, int]:
    """The space, its base run (side A) and the run that trained with a too-high learning rate (side B)."""
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    run_a = space["base_run_id"]
    run_b = demo_world.runs["high-lr"] if demo_world.runs["high-lr"] != run_a else demo_world.runs["overfit"]
    return space["id"], run_a, run_b


def _zooms(ui) -> list[dict]:
    return ui.page.evaluate(COMPARE_ZOOMS_JS)


def _map_box(ui, side: str) -> dict:
    box = ui.page.locator(f"[data-testid=compare-{side}] .map").bounding_box()
    assert box is not None, f"compare side {side} has no map"
    return box


def _shown_points(
    server, space_id: int, state: dict
) -> tuple[SnapshotPoints, SnapshotPoints, SnapshotPoints]:
    """The base snapshot's points and those of both sides at the state's epochs."""
    space = server.get(f"/api/spaces/{space_id}")
    base = SnapshotPoints.of(server, space_id, space["base_snapshot_id"])
    a = SnapshotPoints.of(server, space_id, space_snapshot(server, space_id, state["run"], state["epoch"]))
    b = SnapshotPoints.of(server, space_id, space_snapshot(server, space_id, state["runB"], state["epochB"]))
    return base, a, b


#: Records what ``window.conceptevo.idle()`` says the moment the app publishes its handle (before it has
#: fetched anything), as ``window.__idleAtStart``.
IDLE_AT_START_JS = """
Object.defineProperty(window, 'conceptevo', {
  configurable: true,
  get() { return window.__conceptevo; },
  set(handle) { window.__conceptevo = handle; window.__idleAtStart = handle.idle(); },
});
"""


@pytest.mark.parametrize("view", ["compare", "importance", "health", "jobs"])
def test_the_page_is_not_idle_before_a_view_has_loaded(ui, server, demo_world, view):
    """``window.conceptevo.idle()`` is what every test waits on: it must not be true before the view's first
    render has even started."""
    ui.page.add_init_script(IDLE_AT_START_JS)
    ui.goto(f"/{view}?space={demo_world.space_id}")
    assert ui.page.evaluate("window.__idleAtStart") is False, (
        f"/{view}: window.conceptevo.idle() is true before the view has loaded anything"
    )
    ui.assert_no_problems()


#: Once per animation frame for ``ms``: a hash of a canvas's pixels; resolves to the distinct hashes seen.
CANVAS_FRAMES_JS = """
([selector, ms]) => new Promise((resolve) => {
  const c = document.querySelector(selector);
  const copy = document.createElement('canvas');
  const seen = [];
  const t0 = performance.now();
  const tick = () => {
    copy.width = c.width;
    copy.height = c.height;
    const ctx = copy.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const px = new Uint32Array(ctx.getImageData(0, 0, c.width, c.height).data.buffer);
    let h = 0x811c9dc5;
    for (let i = 0; i < px.length; i++) h = Math.imul(h ^ px[i], 0x01000193);
    h = h >>> 0;
    if (!seen.includes(h)) seen.push(h);
    if (performance.now() - t0 < ms) requestAnimationFrame(tick);
    else resolve(seen);
  };
  tick();
})
"""


def test_the_page_is_not_idle_while_the_comparison_maps_glide(ui, server, demo_world):
    """``idle()`` promises "nothing loading and nothing gliding": after an epoch change on the comparison,
    once it says idle, the maps no longer move."""
    space_id, run_a, run_b = _pair(server, demo_world)
    epochs = computed_epochs(server, space_id, run_a)
    state = open_compare(ui, f"space={space_id}&run={run_a}&epoch={epochs[-1]}&runB={run_b}")
    assert state["epoch"] == epochs[-1]
    ui.click_tick(epochs[0], scope=ui.page.get_by_test_id("compare-a"))
    ui.wait_until("(e) => window.conceptevo.state().epoch === e && window.conceptevo.idle()", arg=epochs[0])
    frames = ui.page.evaluate(CANVAS_FRAMES_JS, ["[data-testid=compare-a] canvas.map-canvas", 600])
    assert len(frames) == 1, (
        f"map A was drawn {len(frames)} different ways in the 600 ms after window.conceptevo.idle() said the "
        "comparison was idle: its maps were still gliding"
    )
    ui.assert_no_problems()


def test_zooming_or_panning_one_map_moves_the_other_the_same_way(ui, server, demo_world):
    space_id, run_a, run_b = _pair(server, demo_world)
    state = open_compare(ui, f"space={space_id}&run={run_a}&runB={run_b}")
    assert (state["view"], state["run"], state["runB"], state["zoom"]) == ("compare", run_a, run_b, None)
    assert _zooms(ui) == [{"k": 1, "x": 0, "y": 0}] * 2

    # Wheel over map A: map B takes the same transform.
    a = _map_box(ui, "a")
    ui.page.mouse.move(a["x"] + 0.4 * a["width"], a["y"] + 0.45 * a["height"])
    ui.page.mouse.wheel(0, -300)
    ui.wait_until(
        """() => { const [a, b] = ['a', 'b'].map((s) =>
             document.querySelector(`[data-testid=compare-${s}] svg.map-overlay`).__zoom);
           return a.k > 1.2 && a.k === b.k && a.x === b.x && a.y === b.y; }"""
    )
    ui.wait_until("() => window.conceptevo.state().zoom !== null && location.search.includes('zoom=')")
    settle_compare(ui)
    zoom_a, zoom_b = _zooms(ui)
    assert zoom_a == zoom_b and zoom_a["k"] > 1.2, (zoom_a, zoom_b)

    # Drag map B (the brush is off, so a drag pans): map A pans with it.
    b = _map_box(ui, "b")
    start = (b["x"] + 0.5 * b["width"], b["y"] + 0.5 * b["height"])
    ui.page.mouse.move(*start)
    ui.page.mouse.down()
    ui.page.mouse.move(start[0] - 40, start[1] + 20, steps=4)
    ui.page.mouse.move(start[0] - 80, start[1] + 40, steps=4)
    ui.page.mouse.up()
    ui.wait_until(
        """(before) => { const [a, b] = ['a', 'b'].map((s) =>
             document.querySelector(`[data-testid=compare-${s}] svg.map-overlay`).__zoom);
           return b.x !== before.x && a.k === b.k && a.x === b.x && a.y === b.y; }""",
        arg=zoom_b,
    )
    panned_a, panned_b = _zooms(ui)
    assert panned_a == panned_b
    assert panned_b["k"] == zoom_b["k"]
    assert (panned_b["x"] - zoom_b["x"], panned_b["y"] - zoom_b["y"]) == pytest.approx((-80, 40), abs=2)

    # The URL keeps the view: after a reload both maps show the URL's zoom box, centred, filling the map
    # along one axis (as the map view does).
    ui.wait_until(
        "(box) => JSON.stringify(window.conceptevo.state().zoom) !== JSON.stringify(box)", arg=state["zoom"]
    )
    settle_compare(ui)
    url_box = ui.state()["zoom"]
    ui.reload()
    settle_compare(ui)
    assert ui.state()["zoom"] == pytest.approx(url_box, rel=1e-4)
    after_a, after_b = _zooms(ui)
    assert after_a == after_b, "the maps show different regions after a reload"
    extent = list(_shown_points(server, space_id, ui.state()))
    for side in ("a", "b"):
        m = CompareMap.read(ui, side, extent)
        (cx0, cy0), (cx1, cy1) = m.to_css(*url_box[:2]), m.to_css(*url_box[2:])
        fill = max((cx1 - cx0) / m.width, (cy1 - cy0) / m.height)
        centre = ((cx0 + cx1) / 2, (cy0 + cy1) / 2)
        assert fill == pytest.approx(1, abs=0.01) and centre == pytest.approx(
            (m.width / 2, m.height / 2), abs=2
        ), (
            f"after a reload map {side} shows the URL's zoom box {url_box} filling {fill:.1%} of the map "
            f"(centred at {centre} in a {m.width}x{m.height} map): zoom k={m.k:.4f}"
        )
    ui.assert_no_problems()


def _region_counts(
    points: SnapshotPoints, box: tuple[float, float, float, float], grow: float
) -> dict[int, set]:
    """Layer index → ids of the points inside ``box`` grown by ``grow`` (data units; negative shrinks)."""
    x0, y0, x1, y1 = box
    inside: dict[int, set] = {}
    for n, layer, x, y in points.placed():
        if x0 - grow <= x <= x1 + grow and y0 - grow <= y <= y1 + grow:
            inside.setdefault(layer, set()).add(n)
    return inside


def _selection(ui, side: str) -> tuple[float, float, float, float] | None:
    """The brush rectangle on a map: (x0, y0, x1, y1) in CSS pixels inside it, or None when none is shown."""
    return ui.page.evaluate(
        """(side) => { const r = document.querySelector(`[data-testid=compare-${side}] g.brush rect.selection`);
             if (!r || r.style.display === 'none' || r.getAttribute('x') === null) return null;
             const [x, y, w, h] = ['x', 'y', 'width', 'height'].map((k) => Number(r.getAttribute(k)));
             return [x, y, x + w, y + h]; }""",
        side,
    )


def _brush(ui, side: str, fractions: tuple[float, float, float, float]) -> None:
    """Drag a box on a map, from and to fractions of its width and height."""
    box = _map_box(ui, side)
    fx0, fy0, fx1, fy1 = fractions
    x0, y0 = box["x"] + fx0 * box["width"], box["y"] + fy0 * box["height"]
    x1, y1 = box["x"] + fx1 * box["width"], box["y"] + fy1 * box["height"]
    ui.page.mouse.move(x0, y0)
    ui.page.mouse.down()
    ui.page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    ui.page.mouse.move(x1, y1, steps=5)
    ui.page.mouse.up()


def _region_table(ui) -> tuple[list[tuple[str, int, int]], tuple[int, int], list[str]]:
    """The region summary: per-layer rows (layer, count A, count B), the totals, and the table's header."""
    table = ui.page.locator("[data-testid=region-summary] table.counts")
    header = table.locator("thead th").all_inner_texts()
    rows = table.locator("tbody tr").evaluate_all(
        "trs => trs.map(tr => [tr.className, ...[...tr.querySelectorAll('td')].map(td => td.textContent)])"
    )
    totals = [r for r in rows if r[0] == "total"]
    assert len(totals) == 1 and totals[0][1] == "all", rows
    per_layer = [(r[1], int(r[2]), int(r[3])) for r in rows if r[0] != "total"]
    return per_layer, (int(totals[0][2]), int(totals[0][3])), header


def _check_region(ui, brushed: str, maps: dict, points: dict, layers: dict, runs: dict) -> int:
    """The brush drawn on ``brushed`` is shown on both maps over the same data box; the per-layer table counts
    the API's points inside it; the canvases draw exactly those in full colour. Returns how many are lit."""
    sel = {side: _selection(ui, side) for side in ("a", "b")}
    assert sel[brushed] is not None, f"no brush rectangle on map {brushed}"
    other = "b" if brushed == "a" else "a"
    assert sel[other] is not None, f"the brush on map {brushed} is not shown on map {other}"
    g = maps[brushed]
    (dx0, dy0), (dx1, dy1) = g.to_data(*sel[brushed][:2]), g.to_data(*sel[brushed][2:])
    box = (dx0, dy0, dx1, dy1)
    mirrored = (*maps[other].to_css(dx0, dy0), *maps[other].to_css(dx1, dy1))
    assert mirrored == pytest.approx(sel[other], abs=0.5), (
        "the other map's brush is not over the same data box"
    )

    half_px = 0.5 * g.px()
    strict = {side: _region_counts(points[side], box, -half_px) for side in ("a", "b")}
    loose = {side: _region_counts(points[side], box, half_px) for side in ("a", "b")}
    per_layer, totals, header = _region_table(ui)
    assert header == ["layer", runs["a"], runs["b"]]
    shown = {name: (ca, cb) for name, ca, cb in per_layer}
    assert len(shown) == len(per_layer), per_layer
    for side, col in (("a", 0), ("b", 1)):
        for layer_idx, name in layers.items():
            n_strict = len(strict[side].get(layer_idx, ()))
            n_loose = len(loose[side].get(layer_idx, ()))
            n_shown = shown.get(name, (0, 0))[col]
            assert n_strict <= n_shown <= n_loose, (
                f"map {side}, layer {name}: the table counts {n_shown}, the API's points inside the box "
                f"are {n_strict}–{n_loose}"
            )
        all_strict = sum(len(v) for v in strict[side].values())
        all_loose = sum(len(v) for v in loose[side].values())
        assert all_strict <= totals[col] <= all_loose, (side, totals, all_strict, all_loose)
    # Only layers with a neuron inside are rows, in layer order.
    order = {name: idx for idx, name in layers.items()}
    assert [name for name, _a, _b in per_layer] == sorted(shown, key=order.get)
    assert all(ca + cb > 0 for _name, ca, cb in per_layer), per_layer
    if not per_layer:  # an empty box (the placement decides where neurons lie) says so instead
        assert ui.page.get_by_test_id("region-sentence").count() == 0
        assert (
            "No neuron of either run in this region." in ui.page.get_by_test_id("region-summary").inner_text()
        )
        return 0
    # The sentence names the layer where the runs differ most (the first such layer).
    sentence = ui.page.get_by_test_id("region-sentence").inner_text()
    top = max(per_layer, key=lambda r: (abs(r[1] - r[2]), -order[r[0]]))
    assert sentence == f"In this region {runs['a']} has {top[1]} {top[0]} neurons, {runs['b']} has {top[2]}."

    # Pixels: the neurons inside the box are drawn in full colour, those outside faded — on both maps.
    lit_total = 0
    for side in ("a", "b"):
        m = maps[side]
        inside_ids = set().union(*strict[side].values()) if strict[side] else set()
        near_ids = set().union(*loose[side].values()) if loose[side] else set()
        css = {n: m.to_css(x, y) for n, _l, x, y in points[side].placed()}
        lit = sorted(inside_ids)
        ink = m.ink_at(ui, [css[n] for n in lit])
        dull = [n for n, c in zip(lit, ink, strict=True) if c is None or c <= VIVID]
        assert not dull, (
            f"map {side}: {len(dull)} of {len(lit)} neurons inside the region are not lit: {dull[:10]}"
        )
        outside = [
            n
            for n, p in css.items()
            if n not in near_ids
            and 0 <= p[0] < m.width
            and 0 <= p[1] < m.height
            and all(math.dist(p, css[i]) > COVER_PX for i in near_ids)
        ]
        ink = m.ink_at(ui, [css[n] for n in outside])
        bright = [n for n, c in zip(outside, ink, strict=True) if c is not None and c > VIVID]
        assert outside, f"map {side}: no neuron outside the region to check"
        assert not bright, f"map {side}: {len(bright)} of {len(outside)} neurons outside the region are lit"
        lit_total += len(lit)
    return lit_total


def test_a_brushed_region_lights_and_counts_the_same_box_on_both_maps(ui, server, demo_world):
    space_id, run_a, run_b = _pair(server, demo_world)
    state = open_compare(ui, f"space={space_id}&run={run_a}&runB={run_b}")
    base, pa, pb = _shown_points(server, space_id, state)
    points = {"a": pa, "b": pb}
    maps = {side: CompareMap.read(ui, side, [base, pa, pb]) for side in ("a", "b")}
    neurons_a, neurons_b = Neurons.of(server, run_a), Neurons.of(server, run_b)
    runs = {"a": server.get(f"/api/runs/{run_a}")["name"], "b": server.get(f"/api/runs/{run_b}")["name"]}

    # Pin a neuron by clicking it on map A: the neuron of the same layer and channel is pinned on map B.
    xy_a = {n: (x, y) for n, _l, x, y in pa.placed()}
    xy_b = {n: (x, y) for n, _l, x, y in pb.placed()}
    client = {n: maps["a"].to_client(*xy) for n, xy in xy_a.items()}
    clickable = ui.page.evaluate(
        """(cands) => cands.filter(([id, x, y]) => { const el = document.elementFromPoint(x, y);
             return el !== null && el.closest('[data-testid=compare-a] .map-overlay') !== null; })
           .map(([id]) => id)""",
        [[n, *p] for n, p in client.items()],
    )
    assert clickable, "no neuron of map A can be reached by the pointer"
    target = max(clickable, key=lambda n: min(math.dist(client[n], client[o]) for o in client if o != n))
    ui.page.mouse.click(*client[target])
    counterpart = next(
        n
        for n in neurons_b.ids
        if neurons_b.layer_idx[n] == neurons_a.layer_idx[target]
        and neurons_b.channel[n] == neurons_a.channel[target]
    )
    ui.wait_until(
        "([a, b]) => window.conceptevo.state().neuron === a && window.conceptevo.state().neuronB === b",
        arg=[target, counterpart],
    )
    settle_compare(ui)
    assert f"neuron={target}" in ui.page.url and f"neuronB={counterpart}" in ui.page.url
    # The tests' geometry agrees with where the page rings the pinned neurons on both maps.
    maps["a"].check(ui, "selected-ring", xy_a[target])
    if counterpart in xy_b:
        maps["b"].check(ui, "selected-ring", xy_b[counterpart])
    # The pinned strips: one sprite per computed epoch of each run, loaded.
    pinned = ui.page.get_by_test_id("pinned")
    headers = pinned.locator("table.pinned-strips thead th").all_inner_texts()
    assert headers[1:] == [
        f"{runs['a']} · {neurons_a.name(target)}",
        f"{runs['b']} · {neurons_b.name(counterpart)}",
    ]
    n_sprites = len(computed_epochs(server, space_id, run_a)) + len(computed_epochs(server, space_id, run_b))
    wait_images_loaded(ui, "[data-testid=pinned] img.pinned-sprite", n_sprites)

    # Brush a region on map A.
    toggle = ui.page.get_by_test_id("brush-toggle")
    toggle.click()
    ui.wait_until(
        "() => document.querySelector('[data-testid=brush-toggle]').getAttribute('aria-pressed') === 'true'"
    )
    assert ui.page.locator("[data-testid=compare-a] g.brush").count() == 1
    _brush(ui, "a", (0.22, 0.18, 0.58, 0.72))
    ui.page.get_by_test_id("region-sentence").wait_for()
    settle_compare(ui)
    layers = dict(neurons_a.layers)
    assert _check_region(ui, "a", maps, points, layers, runs) > 0
    # The pins stay.
    assert (ui.state()["neuron"], ui.state()["neuronB"]) == (target, counterpart)
    ui.screenshot("compare-brush-pinned")

    # A new box drawn on map B (outside the first) moves the region on map A too.
    before = _region_table(ui)
    sentence = ui.page.get_by_test_id("region-sentence").inner_text()
    _brush(ui, "b", (0.64, 0.1, 0.93, 0.62))
    ui.wait_until(
        "(s) => document.querySelector('[data-testid=region-summary]')?.textContent.includes(s) === false",
        arg=sentence,
    )
    settle_compare(ui)
    maps = {side: CompareMap.read(ui, side, [base, pa, pb]) for side in ("a", "b")}
    _check_region(ui, "b", maps, points, layers, runs)
    assert _region_table(ui) != before

    # "clear" drops the region: nothing is faded any more.
    ui.page.locator("[data-testid=region-summary] h3 button").click()
    ui.wait_until("() => document.querySelector('[data-testid=region-sentence]') === null")
    assert _selection(ui, "a") is None and _selection(ui, "b") is None
    ui.assert_no_problems()


def _synced_epoch(mode: str, epoch_a: int, run_a: dict, run_b: dict, computed_b: list[int]) -> int:
    """Run B's epoch beside run A's ``epoch_a`` (the rule of frontend/src/compare/sync.ts): by ``milestone``,
    the computed epoch of B whose train top-1 is closest to A's at ``epoch_a`` (ties: the earlier); by
    ``epoch``, the computed epoch of B nearest to ``epoch_a`` (ties: the earlier)."""
    if mode == "milestone":
        target = next((s["train_top1"] for s in run_a["snapshots"] if s["epoch"] == epoch_a), None)
        if target is not None:
            best = None
            for s in sorted(run_b["snapshots"], key=lambda s: s["epoch"]):
                if s["epoch"] not in computed_b or s["train_top1"] is None:
                    continue
                if best is None or abs(s["train_top1"] - target) < abs(best["train_top1"] - target) - 1e-12:
                    best = s
            if best is not None:
                return best["epoch"]
    return min(computed_b, key=lambda e: (abs(e - epoch_a), e))


def _wait_epochs(ui, epoch: int, epoch_b: int) -> None:
    ui.wait_until(
        "([a, b]) => { const s = window.conceptevo.state(); return s.epoch === a && s.epochB === b; }",
        arg=[epoch, epoch_b],
    )
    settle_compare(ui)


def test_milestone_sync_shows_run_b_at_the_epoch_of_the_closest_train_accuracy(ui, server, demo_world):
    space_id = demo_world.space_id
    runs = {name: server.get(f"/api/runs/{run_id}") for name, run_id in demo_world.runs.items()}
    computed = {name: computed_epochs(server, space_id, run["id"]) for name, run in runs.items()}
    # Every (run A, epoch, run B) of the world; those where the two rules disagree tell them apart.
    cases = [
        (a, e, b, _synced_epoch("milestone", e, runs[a], runs[b], computed[b]))
        for a in runs
        for b in runs
        if a != b
        for e in computed[a]
    ]
    telling = [
        c for c in cases if c[3] != _synced_epoch("epoch", c[1], runs[c[0]], runs[c[2]], computed[c[2]])
    ]
    assert telling, f"in this world milestone sync always agrees with epoch sync: {cases}"
    name_a, epoch_a, name_b, expected = telling[0]
    run_a, run_b = runs[name_a], runs[name_b]
    by_epoch = _synced_epoch("epoch", epoch_a, run_a, run_b, computed[name_b])

    # Same epoch first (the default), then the milestone picked in the page.
    ui.goto(f"/compare?space={space_id}&run={run_a['id']}&epoch={epoch_a}&runB={run_b['id']}")
    _wait_epochs(ui, epoch_a, by_epoch)
    assert ui.page.get_by_test_id("sync-select").input_value() == "epoch"
    ui.page.get_by_test_id("sync-select").select_option("milestone")
    _wait_epochs(ui, epoch_a, expected)
    assert ui.state()["sync"] == "milestone"
    assert "sync=milestone" in ui.page.url and f"epochB={expected}" in ui.page.url
    head_b = ui.page.locator("[data-testid=compare-b] .side-head").inner_text()
    assert f"epoch {expected}" in head_b, head_b
    top1 = next(s["train_top1"] for s in run_b["snapshots"] if s["epoch"] == expected)
    assert f"train top-1 {top1:.2f}" in head_b, head_b
    ui.screenshot("compare-milestone")

    # Another epoch of run A on its slider: run B follows by accuracy again.
    for other in [e for e in computed[name_a] if e != epoch_a]:
        ui.click_tick(other, scope=ui.page.get_by_test_id("compare-a"))
        _wait_epochs(ui, other, _synced_epoch("milestone", other, run_a, run_b, computed[name_b]))

    # Every telling case straight from a URL.
    for name_a, epoch_a, name_b, expected in telling[:4]:
        ui.goto(
            f"/compare?space={space_id}&run={runs[name_a]['id']}&epoch={epoch_a}"
            f"&runB={runs[name_b]['id']}&sync=milestone"
        )
        _wait_epochs(ui, epoch_a, expected)
        assert ui.page.get_by_test_id("sync-select").input_value() == "milestone"
    ui.assert_no_problems()

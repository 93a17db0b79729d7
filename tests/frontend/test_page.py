"""The evolution map in a real Chromium: points drawn, hover tooltip, neuron panel, slider glide, colourings.

Every test opens a fresh page on ``conceptevo serve`` over the demo world (see conftest.py), checks what the
page shows through its read-only test handle ``window.conceptevo``, the DOM and the canvas pixels, saves
screenshots under ``tests/artifacts/`` and ends by asserting that nothing went wrong in the page (console
errors, page errors, failed requests, HTTP errors).
"""

from __future__ import annotations

import math
import re

import pytest

from tests.frontend.browser import requires_browser
from tests.frontend.pagekit import (
    SAMPLE_FRAMES_JS,
    Neurons,
    fetch_points,
    hover_until_tooltip,
    isolated_point,
    run_url,
    wait_images_loaded,
)

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]

#: A point counts as drawn in full colour when the pixel under its centre is this far from the background
#: (largest channel difference); points faded by a class highlight are mixed 78 % into the background.
VIVID = 70


def test_map_draws_every_point_of_the_run_and_the_canvas_shows_them(ui, server, demo_world):
    ui.goto("/")
    state = ui.state()
    # The default view: the space's base run at its base epoch, written back into the URL.
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    assert (state["space"], state["run"], state["epoch"]) == (
        space["id"],
        space["base_run_id"],
        space["base_epoch"],
    )
    assert f"space={space['id']}&run={space['base_run_id']}&epoch={space['base_epoch']}" in ui.page.url
    run_name = server.get(f"/api/runs/{state['run']}")["name"]
    assert ui.app("computedEpochs()") == demo_world.computed[run_name]

    neurons = Neurons.of(server, state["run"])
    stats = ui.app("stats()")
    points = ui.app("points()")
    assert points["epoch"] == state["epoch"]
    assert sorted(points["neuronId"]) == sorted(neurons.ids)
    assert stats["pointsLoaded"] == len(neurons.ids)
    assert stats["pointsDrawn"] == len(neurons.ids), stats
    assert stats["firstDrawMs"] is not None and stats["firstDrawMs"] > 0

    # The canvas is not blank: the points' ink covers a visible share of it, in one colour per layer...
    ink = ui.canvas_ink()
    assert ink["ink"] > 0.01 * ink["total"], ink
    assert ink["colours"] >= len(neurons.layers), ink
    # ...and every point is on the canvas where the app says it is drawn.
    centres = ui.centre_ink(points["neuronId"])
    assert all(c is not None for c in centres), "some points are drawn outside the canvas"
    assert sum(c > VIVID for c in centres) >= 0.95 * len(centres), sorted(centres)[:20]

    # Legend: one toggle per layer with its neuron count; concept labels name classes of the data set.
    layer_counts = ui.map.locator("[data-testid=legend] button[data-layer]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.layer), Number(e.querySelector('.legend-count').textContent)])",
    )
    assert dict(layer_counts) == neurons.per_layer()
    labels = ui.app("labels()")
    assert labels, "no concept label on the map"
    assert set(labels) <= set(neurons.class_names), labels
    # Slider: a tick per checkpoint, all computed for this run; the label names the epoch.
    ticks = ui.map.locator("[data-testid=slider] g.tick").evaluate_all(
        "els => els.map(e => [Number(e.dataset.epoch), e.dataset.computed])"
    )
    run = server.get(f"/api/runs/{state['run']}")
    assert ticks == [[s["epoch"], "1"] for s in run["snapshots"]]
    last = run["snapshots"][-1]["epoch"]
    assert ui.map.get_by_test_id("epoch-label").inner_text() == f"epoch {state['epoch']} / {last}"
    ui.wait_until("() => document.querySelector('[data-testid=jobs-indicator]').textContent === 'no jobs'")
    assert ui.page.get_by_test_id("error").is_hidden()

    ui.screenshot("map-layers")
    ui.assert_no_problems()


def test_hovering_a_point_shows_its_tooltip_with_loaded_thumbnails(ui, server):
    ui.goto("/")
    state = ui.state()
    neurons = Neurons.of(server, state["run"])
    target = isolated_point(ui)
    tooltip = ui.tooltip
    assert tooltip.count() == 0

    hover_until_tooltip(ui, target)
    assert tooltip.locator(".tooltip-title").inner_text() == neurons.name(target["id"])
    assert f"epoch {state['epoch']}" in tooltip.inner_text()
    thumbs = tooltip.locator("img.thumb")
    assert thumbs.count() == 3
    wait_images_loaded(ui, "[data-testid=tooltip] img.thumb", 3)
    srcs = thumbs.evaluate_all("els => els.map(e => new URL(e.src).pathname)")
    snapshot_id = _snapshot_of(server, state)
    assert srcs == [f"/api/patches/{snapshot_id}/{target['id']}/{rank}" for rank in range(3)]
    # The tooltip sits next to the pointer, inside the window.
    box = tooltip.bounding_box()
    assert box and box["width"] > 60 and box["height"] > 40
    assert 0 <= box["x"] and box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 800
    assert math.dist((box["x"], box["y"]), (target["x"], target["y"])) < 400

    def hover_again() -> None:
        hover_until_tooltip(ui, isolated_point(ui, prefer=target["id"]))
        wait_images_loaded(ui, "[data-testid=tooltip] img.thumb", 3)

    ui.screenshot("tooltip", prepare=hover_again)

    # Leaving the map hides it.
    ui.page.mouse.move(5, 5)
    tooltip.wait_for(state="hidden")
    ui.assert_no_problems()


def test_clicking_a_neuron_opens_its_panel_with_patches_evolution_and_neighbours(ui, server, demo_world):
    ui.goto("/")
    state = ui.state()
    neurons = Neurons.of(server, state["run"])
    k = int(server.get(f"/api/spaces/{demo_world.space_id}")["params"]["k"])
    computed = ui.app("computedEpochs()")
    assert len(computed) >= 3
    target = isolated_point(ui)
    history_before = ui.page.evaluate("history.length")

    ui.page.mouse.click(target["x"], target["y"])
    panel = ui.map.get_by_test_id("neuron-panel")
    panel.get_by_test_id("neighbours").wait_for()
    assert ui.state()["neuron"] == target["id"]
    assert f"neuron={target['id']}" in ui.page.url
    assert ui.page.evaluate("history.length") == history_before + 1  # selecting a neuron is a navigation
    assert panel.get_by_test_id("neuron-title").inner_text() == neurons.name(target["id"])

    # k patches at this epoch, all loaded.
    assert panel.locator("[data-testid=patches] img.patch-img").count() == k
    wait_images_loaded(
        ui, "section.map-view [data-testid=neuron-panel] [data-testid=patches] img.patch-img", k
    )
    # The evolution strip: one row per computed epoch, the shown one marked, its sprite loaded.
    rows = panel.locator("[data-testid=evolution] .evo-row")
    assert rows.evaluate_all("els => els.map(e => Number(e.dataset.epoch))") == computed
    assert panel.locator("[data-testid=evolution] .evo-row.current").get_attribute("data-epoch") == str(
        state["epoch"]
    )
    wait_images_loaded(ui, "section.map-view [data-testid=neuron-panel] .evo-row.current img", 1)
    # Neighbours in the unified space: buttons naming a layer:channel and a run · epoch.
    neighbours = panel.locator("[data-testid=neighbours] li button")
    assert 1 <= neighbours.count() <= 8
    first = neighbours.first.inner_text()
    assert re.search(r"features\.\d+:\d+", first) and re.search(r"· e\d+", first), first
    # The trajectory on the map: a dot per computed epoch, a line through them, the selection ring.
    ui.wait_until(
        "(n) => document.querySelectorAll('section.map-view .map-overlay .traj-dot').length === n",
        arg=len(computed),
    )
    assert ui.map.locator(".map-overlay path.traj-line").count() == 1
    assert ui.map.locator(".map-overlay .traj-dot.current").count() == 1
    # Its epoch tags as drawn (real glyph boxes): the current epoch's among them, no two overlapping.
    tags = ui.map.locator(".map-overlay text.traj-epoch").evaluate_all(
        "els => els.map(e => { const b = e.getBBox();"
        " return [b.x, b.y, b.x + b.width, b.y + b.height, e.textContent, e.classList.contains('current')]; })"
    )
    assert [t[4] for t in tags if t[5]] == [f"e{ui.app('state()')['epoch']}"], tags
    for i, a in enumerate(tags):
        for b in tags[i + 1 :]:
            assert not (
                a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5
            ), (a, b)
    ring = ui.map.locator(".map-overlay .selected-ring")
    assert ring.is_visible()
    # (The panel narrowed the map, so the neuron is drawn elsewhere than where it was clicked.)
    now = ui.app("clientPosition(x)", target["id"])
    assert (
        math.dist(
            (float(ring.get_attribute("cx")), float(ring.get_attribute("cy"))),
            _css_in_map(ui, {"x": now[0], "y": now[1]}),
        )
        < 1.5
    )

    ui.page.mouse.move(5, 5)  # off the map: no tooltip in the picture
    ui.tooltip.wait_for(state="hidden")
    ui.screenshot("neuron-panel")

    # Another epoch from the strip: the same neuron, its patches at that epoch, no new history entry.
    other = computed[0]
    panel.locator(f"[data-testid=evolution] .evo-row[data-epoch='{other}']").click()
    ui.wait_until(
        "(e) => document.querySelector('section.map-view [data-testid=evolution] .evo-row.current')?.dataset.epoch === String(e)",
        arg=other,
    )
    ui.wait_idle()
    assert (ui.state()["epoch"], ui.state()["neuron"]) == (other, target["id"])
    assert ui.page.evaluate("history.length") == history_before + 1
    wait_images_loaded(
        ui, "section.map-view [data-testid=neuron-panel] [data-testid=patches] img.patch-img", k
    )
    snapshot_id = _snapshot_of(server, ui.state())
    src = panel.locator("[data-testid=patches] img.patch-img").first.get_attribute("src")
    assert src.startswith(f"/api/patches/{snapshot_id}/{target['id']}/"), src

    # Escape closes the panel and clears the selection.
    ui.page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    assert ui.state()["neuron"] is None and "neuron=" not in ui.page.url
    assert ui.map.locator(".map-overlay .traj-dot").count() == 0
    ui.assert_no_problems()


@pytest.mark.parametrize("change", ["window-resized", "panel-opened"])
def test_the_tooltip_does_not_stay_behind_when_the_map_is_laid_out_anew(ui, server, change):
    """After the map changes size under a still pointer, the tooltip shows the neuron now under the pointer, or
    nothing: never a neuron drawn elsewhere."""
    ui.goto("/")
    neurons = Neurons.of(server, ui.state()["run"])
    target = isolated_point(ui)
    hover_until_tooltip(ui, target)
    if change == "window-resized":
        ui.page.set_viewport_size({"width": 1920, "height": 1080})
    else:  # a click opens the neuron panel beside the map, which narrows it
        ui.page.mouse.click(target["x"], target["y"])
        ui.map.get_by_test_id("neighbours").wait_for()
    ui.wait_idle()
    moved_to = ui.app("clientPosition(x)", target["id"])
    assert math.dist(moved_to, (target["x"], target["y"])) > 20, "the map did not move the neuron"
    if ui.tooltip.count():
        under_pointer = [
            n
            for n, p in zip(
                ui.app("points()")["neuronId"],
                ui.page.evaluate(
                    "() => window.conceptevo.points().neuronId.map((n) => window.conceptevo.clientPosition(n))"
                ),
                strict=True,
            )
            if p and math.dist(p, (target["x"], target["y"])) <= 9
        ]
        title = ui.tooltip.locator(".tooltip-title").inner_text()
        assert title in [neurons.name(n) for n in under_pointer], (
            f"the tooltip still shows {title}, now drawn at {moved_to}, {math.dist(moved_to, (target['x'], target['y'])):.0f} px"
            f" from the pointer at {(target['x'], target['y'])}"
        )
    ui.assert_no_problems()


def test_moving_the_slider_glides_the_points_to_their_new_positions(ui, server, demo_world):
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    run_id = space["base_run_id"]
    run_name = server.get(f"/api/runs/{run_id}")["name"]
    # Two epochs that are not the base: the grey backdrop shows in both, so only the points change.
    a, b = [e for e in demo_world.computed[run_name] if e != space["base_epoch"]][:2]
    ui.goto(run_url(demo_world.space_id, run_id, a))
    before = ui.app("points()")
    hash_a = ui.canvas_hash()
    # The neuron that moves farthest in the data (so on screen: one scale for both axes).
    target = fetch_points(server, space["id"], _snapshot_of(server, {"run": run_id, "epoch": b}))
    old = {n: (x, y) for n, x, y in zip(before["neuronId"], before["x"], before["y"], strict=True)}
    mover = max(old, key=lambda n: math.dist(old[n], target[n]))
    start = ui.app("clientPosition(x)", mover)

    ui.page.evaluate(SAMPLE_FRAMES_JS, mover)
    ui.click_tick(b)
    ui.wait_until("() => window.__samples.done")
    ui.wait_idle()
    samples = ui.page.evaluate("window.__samples.list")
    after = ui.app("points()")
    hash_b = ui.canvas_hash()
    stats = ui.app("stats()")
    end = ui.app("clientPosition(x)", mover)

    assert ui.state()["epoch"] == b and after["epoch"] == b and f"epoch={b}" in ui.page.url
    assert ui.map.get_by_test_id("epoch-label").inner_text().startswith(f"epoch {b} /")
    # The shown positions are the new epoch's, and they differ from the old ones for most neurons.
    shown = {n: (x, y) for n, x, y in zip(after["neuronId"], after["x"], after["y"], strict=True)}
    assert shown.keys() == target.keys()
    assert max(math.dist(shown[n], target[n]) for n in shown) < 1e-4
    moved = [math.dist(old[n], target[n]) > 1e-6 for n in after["neuronId"]]
    assert len(moved) == len(old) and sum(moved) > 0.5 * len(moved), sum(moved)
    assert hash_a != hash_b
    # The glide drew intermediate frames: several frames timed, canvases unlike both ends, and the biggest
    # mover seen part-way between where it was and where it went.
    assert len(stats["glideFrameTimes"]) >= 5 and stats["lastGlideFrames"] >= 5, stats
    gliding = [s for s in samples if s["gliding"]]
    middle = {s["hash"] for s in gliding} - {hash_a, hash_b}
    assert middle, f"no intermediate frame among {len(samples)} samples ({len(gliding)} while gliding)"
    span = math.dist(start, end)
    assert span > 5, (start, end)
    between = [
        s["pos"]
        for s in gliding
        if s["pos"] and math.dist(s["pos"], start) > 0.05 * span and math.dist(s["pos"], end) > 0.05 * span
    ]
    assert between, f"neuron {mover} never drawn between {start} and {end}: {samples}"

    # The keyboard steps through computed epochs too (and the URL follows, without history entries).
    history = ui.page.evaluate("history.length")
    ui.page.keyboard.press("ArrowLeft")
    ui.wait_until("(e) => window.conceptevo.state().epoch === e && window.conceptevo.idle()", arg=a)
    ui.page.keyboard.press("ArrowRight")
    ui.wait_until("(e) => window.conceptevo.state().epoch === e && window.conceptevo.idle()", arg=b)
    assert ui.page.evaluate("history.length") == history
    ui.assert_no_problems()


def test_play_steps_through_every_computed_epoch(ui, server, demo_world):
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    run_id = space["base_run_id"]
    computed = demo_world.computed[server.get(f"/api/runs/{run_id}")["name"]]
    ui.goto(run_url(demo_world.space_id, run_id, computed[0]))
    ui.page.evaluate(
        """() => { window.__epochs = [];
        const tick = () => { const e = window.conceptevo.state().epoch;
          if (window.__epochs[window.__epochs.length - 1] !== e) window.__epochs.push(e);
          requestAnimationFrame(tick); };
        tick(); }"""
    )
    play = ui.map.get_by_test_id("play")
    play.click()
    ui.wait_until(
        "(last) => window.conceptevo.state().epoch === last && window.conceptevo.idle()"
        " && document.querySelector('section.map-view [data-testid=play]').getAttribute('aria-label') === 'Play'",
        arg=computed[-1],
        timeout_ms=60_000,
    )
    assert ui.page.evaluate("window.__epochs") == computed
    ui.assert_no_problems()


def test_colouring_by_class_and_highlighting_a_class(ui, server, demo_world):
    ui.goto("/")
    state = ui.state()
    neurons = Neurons.of(server, state["run"])
    ui.page.get_by_test_id("colour-select").select_option("class")
    ui.wait_until("() => window.conceptevo.state().color === 'class'")
    ui.wait_idle()
    assert "color=class" in ui.page.url
    legend = ui.map.get_by_test_id("legend")
    entries = legend.locator("button[data-class]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.class), e.querySelector('.legend-label').textContent,"
        " Number(e.querySelector('.legend-count').textContent)])"
    )
    assert entries and sum(count for _c, _l, count in entries) <= len(neurons.ids)
    assert all(label == neurons.class_names[c] for c, label, _n in entries), entries
    ids = ui.app("points()")["neuronId"]
    vivid_before = sum(c is not None and c > VIVID for c in ui.centre_ink(ids))
    assert vivid_before >= 0.9 * len(ids)

    # Highlight the second-largest class.
    cls, _name, count = sorted(entries, key=lambda e: -e[2])[1]
    ui.map.get_by_test_id("class-picker").select_option(str(cls))
    ui.wait_until("(c) => window.conceptevo.state().cls === c", arg=cls)
    ui.wait_idle()
    assert f"class={cls}" in ui.page.url
    picker = ui.map.locator("label.class-picker")
    assert f"— {count} neurons" in picker.inner_text()
    centres = ui.centre_ink(ids)
    vivid_after = sum(c is not None and c > VIVID for c in centres)
    # The class's neurons stay in full colour (drawn on top); the others fade into the background.
    assert 0.8 * count <= vivid_after <= count + 0.1 * len(ids), (vivid_after, count, len(ids))
    assert vivid_after < vivid_before
    ui.screenshot("map-class-highlight")

    # The legend entry toggles the highlight off again.
    legend.locator(f"button[data-class='{cls}']").click()
    ui.wait_until("() => window.conceptevo.state().cls === null")
    assert "class=" not in ui.page.url
    assert ui.map.get_by_test_id("class-picker").input_value() == ""
    ui.assert_no_problems()


def test_hiding_a_layer_in_the_legend_removes_its_points(ui, server):
    ui.goto("/")
    neurons = Neurons.of(server, ui.state()["run"])
    per_layer = neurons.per_layer()
    layer = max(per_layer, key=per_layer.get)
    toggle = ui.map.locator(f"[data-testid=legend] button[data-layer='{layer}']")
    assert toggle.get_attribute("aria-pressed") == "true"
    ink_before = ui.canvas_ink()["ink"]
    toggle.click()
    ui.wait_until("(l) => window.conceptevo.state().hidden.includes(l)", arg=layer)
    ui.wait_idle()
    assert f"hide={layer}" in ui.page.url
    assert ui.app("stats()")["pointsDrawn"] == len(neurons.ids) - per_layer[layer]
    assert ui.canvas_ink()["ink"] < ink_before
    assert ui.map.locator(f"[data-testid=legend] button[data-layer='{layer}']").get_attribute(
        "aria-pressed"
    ) == ("false")
    ui.map.locator(f"[data-testid=legend] button[data-layer='{layer}']").click()
    ui.wait_until("() => window.conceptevo.state().hidden.length === 0")
    ui.wait_idle()
    assert ui.app("stats()")["pointsDrawn"] == len(neurons.ids)
    ui.assert_no_problems()


# ---- helpers of this module ----------------------------------------------------------------------------------


def _snapshot_of(server, state: dict) -> int:
    run = server.get(f"/api/runs/{state['run']}")
    return next(s["id"] for s in run["snapshots"] if s["epoch"] == state["epoch"])


def _css_in_map(ui, point: dict) -> tuple[float, float]:
    """A client position as CSS pixels inside the map (the overlay's coordinates)."""
    box = ui.map.locator(".map-overlay").bounding_box()
    return point["x"] - box["x"], point["y"] - box["y"]

"""The page's URL in a real Chromium: a reload restores the whole view, back and forward step through neuron
selections, while epoch and zoom changes rewrite the current history entry instead of adding one."""

from __future__ import annotations

import pytest

from tests.frontend.browser import requires_browser
from tests.frontend.pagekit import Neurons, isolated_point, run_url

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]

#: The neuron the search finds (the issue's example).
SEARCH = ("features.16", 3)


def _base(server, demo_world) -> tuple[int, int, list[int]]:
    """The base run of the space and its computed epochs."""
    space = server.get(f"/api/spaces/{demo_world.space_id}")
    run_id = space["base_run_id"]
    return space["id"], run_id, demo_world.computed[server.get(f"/api/runs/{run_id}")["name"]]


def _panel_shows(ui, title: str) -> None:
    ui.wait_until(
        "(t) => document.querySelector('section.map-view [data-testid=neuron-title]')?.textContent === t"
        " && document.querySelector('section.map-view [data-testid=neighbours]') !== null",
        arg=title,
    )


def _middle_box(ui) -> list[float]:
    """A box in the middle of the shown points' extent, as the page writes it (5 significant digits)."""
    points = ui.app("points()")
    x0, x1, y0, y1 = min(points["x"]), max(points["x"]), min(points["y"]), max(points["y"])
    box = [x0 + 0.15 * (x1 - x0), y0 + 0.15 * (y1 - y0), x0 + 0.75 * (x1 - x0), y0 + 0.75 * (y1 - y0)]
    return [float(f"{v:.5g}") for v in box]


def _shown_positions(ui) -> tuple[list[int], list[list[float]], dict]:
    """The shown neuron ids, their client positions, and the data → client map: {k, x0, y0, cx0, cy0}."""
    shown = ui.app("points()")
    ids = shown["neuronId"]
    client = ui.page.evaluate("(ids) => ids.map((i) => window.conceptevo.clientPosition(i))", ids)
    far = max(range(len(ids)), key=lambda i: abs(shown["x"][i] - shown["x"][0]))
    k = (client[far][0] - client[0][0]) / (shown["x"][far] - shown["x"][0])
    return (
        ids,
        client,
        {"k": k, "x0": shown["x"][0], "y0": shown["y"][0], "cx0": client[0][0], "cy0": client[0][1]},
    )


@pytest.mark.parametrize("zoomed", [False, True], ids=["whole-map", "zoomed"])
def test_a_reload_restores_the_view_from_the_url(ui, server, demo_world, zoomed):
    space_id, run_id, computed = _base(server, demo_world)
    neurons = Neurons.of(server, run_id)
    epoch = computed[1]
    ui.goto(run_url(space_id, run_id, epoch))
    box = _middle_box(ui)
    per_layer = neurons.per_layer()
    hidden = min(per_layer, key=per_layer.get)
    neuron = neurons.find(*SEARCH)
    highlighted = 1  # any class of the data set
    url = run_url(
        space_id,
        run_id,
        epoch,
        neuron=neuron,
        color="class",
        hide=hidden,
        **{"class": highlighted},
        **({"zoom": ",".join(str(v) for v in box)} if zoomed else {}),
    )

    ui.goto(url)
    _panel_shows(ui, neurons.name(neuron))
    ui.wait_idle()
    state = ui.state()
    assert {key: state[key] for key in ("space", "run", "epoch", "neuron", "color", "hidden", "cls")} == {
        "space": space_id,
        "run": run_id,
        "epoch": epoch,
        "neuron": neuron,
        "color": "class",
        "hidden": [hidden],
        "cls": highlighted,
    }
    assert state["zoom"] == (pytest.approx(box, rel=1e-6, abs=1e-6) if zoomed else None)
    assert ui.page.get_by_test_id("colour-select").input_value() == "class"
    assert ui.map.get_by_test_id("class-picker").input_value() == str(highlighted)
    # Only the points of visible layers inside the map are drawn.
    overlay = ui.map.locator(".map-overlay").bounding_box()
    ids, client, _ = _shown_positions(ui)

    def visible_inside(margin: float) -> int:
        return sum(
            1
            for n, p in zip(ids, client, strict=True)
            if neurons.layer_idx[n] != hidden
            and overlay["x"] - margin <= p[0] <= overlay["x"] + overlay["width"] + margin
            and overlay["y"] - margin <= p[1] <= overlay["y"] + overlay["height"] + margin
        )

    drawn = ui.app("stats()")["pointsDrawn"]
    # A dot is drawn when any of it is on the canvas: its centre may lie up to its radius outside (≤ 7.6 CSS px
    # when zoomed in on a small map, see MapView.stampFor), so the band is one radius either side of the edge.
    band = 8
    assert visible_inside(-band) <= drawn <= visible_inside(band), (
        drawn,
        visible_inside(-band),
        visible_inside(band),
    )
    if zoomed:
        assert drawn < len(ids) - per_layer[hidden], "the zoom box did not zoom in"
    else:
        assert drawn == len(ids) - per_layer[hidden]
    url_before, state_before, hash_before = ui.page.url, ui.state(), ui.canvas_hash()
    if zoomed:
        ui.screenshot("url-restored")

    ui.reload()
    _panel_shows(ui, neurons.name(neuron))
    ui.wait_idle()
    assert ui.page.url == url_before
    assert ui.state() == state_before
    assert ui.canvas_hash() == hash_before, "the map after the reload is not drawn as before it"
    ui.assert_no_problems()


@pytest.mark.parametrize("with_panel", [False, True], ids=["map-alone", "neuron-panel-open"])
def test_the_zoom_box_of_the_url_is_what_the_map_shows(ui, server, demo_world, with_panel):
    """The map shows the URL's zoom box: centred, filling the map along one axis (equal scales)."""
    space_id, run_id, computed = _base(server, demo_world)
    ui.goto(run_url(space_id, run_id, computed[1]))
    box = _middle_box(ui)
    neuron = {"neuron": Neurons.of(server, run_id).find(*SEARCH)} if with_panel else {}
    ui.goto(run_url(space_id, run_id, computed[1], **neuron, zoom=",".join(str(v) for v in box)))
    if with_panel:
        ui.map.get_by_test_id("neighbours").wait_for()
        ui.wait_idle()
    assert ui.state()["zoom"] == pytest.approx(box, rel=1e-6, abs=1e-6)
    overlay = ui.map.locator(".map-overlay").bounding_box()
    _ids, _client, m = _shown_positions(ui)
    k = m["k"]
    centre = (
        m["cx0"] + k * ((box[0] + box[2]) / 2 - m["x0"]),
        m["cy0"] + k * ((box[1] + box[3]) / 2 - m["y0"]),
    )
    fill = max(k * (box[2] - box[0]) / overlay["width"], k * (box[3] - box[1]) / overlay["height"])
    assert centre == pytest.approx(
        (overlay["x"] + overlay["width"] / 2, overlay["y"] + overlay["height"] / 2), abs=2
    ), f"the box's centre is drawn at {centre} in a map of {overlay} (box fills {fill:.0%} of it)"
    assert fill == pytest.approx(1, abs=0.01)
    ui.assert_no_problems()


def test_back_and_forward_step_through_neuron_selections(ui, server, demo_world):
    space_id, run_id, computed = _base(server, demo_world)
    neurons = Neurons.of(server, run_id)
    start_epoch = computed[-1]
    ui.goto(run_url(space_id, run_id, start_epoch))
    entries = ui.page.evaluate("history.length")

    # "/" focuses the search; a layer:channel and Enter select that neuron.
    ui.page.keyboard.press("/")
    search = ui.page.get_by_test_id("search")
    assert search.evaluate("e => e === document.activeElement")
    search.fill(f"{SEARCH[0]}:{SEARCH[1]}")
    search.press("Enter")
    first = neurons.find(*SEARCH)
    _panel_shows(ui, neurons.name(first))
    assert ui.state()["neuron"] == first
    # A second neuron, clicked on the map.
    ui.wait_idle()
    target = isolated_point(ui, allowed=[n for n in neurons.ids if n != first])
    ui.page.mouse.click(target["x"], target["y"])
    second = target["id"]
    _panel_shows(ui, neurons.name(second))
    assert ui.page.evaluate("history.length") == entries + 2

    # Epoch and zoom changes rewrite the current entry.
    ui.page.keyboard.press("ArrowLeft")
    ui.wait_until("(e) => window.conceptevo.state().epoch === e", arg=computed[-2])
    ui.wait_idle()
    overlay = ui.map.locator(".map-overlay").bounding_box()
    ui.page.mouse.move(overlay["x"] + overlay["width"] / 2, overlay["y"] + overlay["height"] / 2)
    ui.page.mouse.wheel(0, -400)
    ui.wait_until("() => window.conceptevo.state().zoom !== null && location.search.includes('zoom=')")
    ui.wait_idle()
    zoom = ui.state()["zoom"]
    assert ui.page.evaluate("history.length") == entries + 2
    assert f"epoch={computed[-2]}" in ui.page.url and f"neuron={second}" in ui.page.url

    ui.page.go_back()
    _panel_shows(ui, neurons.name(first))
    ui.wait_idle()
    assert (ui.state()["neuron"], ui.state()["epoch"]) == (first, start_epoch)
    ui.page.go_back()
    ui.map.get_by_test_id("neuron-panel").wait_for(state="hidden")
    ui.wait_idle()
    assert ui.state()["neuron"] is None and "neuron=" not in ui.page.url
    ui.page.go_forward()
    _panel_shows(ui, neurons.name(first))
    ui.page.go_forward()
    _panel_shows(ui, neurons.name(second))
    ui.wait_idle()
    state = ui.state()
    assert (state["neuron"], state["epoch"]) == (second, computed[-2])
    assert state["zoom"] == pytest.approx(zoom, rel=1e-3, abs=1e-6)
    ui.assert_no_problems()

import "./styles.css";

import { App } from "./app";

const root = document.getElementById("app");
if (!root) throw new Error("#app is missing from index.html");
const app = new App(root);

/**
 * A read-only handle for the browser tests and bench/ui.py: what the app holds and shows. Reading it never
 * changes the page.
 */
const handle = {
  state: () => app.store.get(),
  /** Nothing loading and nothing gliding. */
  idle: () => app.current().idle && (app.store.get().view !== "map" || !app.mapView.map.stats.gliding),
  stats: () => ({
    ...app.mapView.map.stats,
    glideFrameTimes: [...app.mapView.map.stats.glideFrameTimes],
    firstDrawMs: app.mapView.timings.firstDrawMs,
    pointsLoaded: app.mapView.shown?.points.n ?? 0,
  }),
  /** The shown points: neuron ids and data positions (copies). */
  points: () => {
    const p = app.mapView.shown?.points;
    return p ? { epoch: p.epoch, neuronId: Array.from(p.neuronId), x: Array.from(p.x), y: Array.from(p.y) } : null;
  },
  /** Where a neuron is drawn now, in client (viewport) pixels; null when it is not drawn. */
  clientPosition: (neuronId: number) => app.mapView.map.clientPosition(app.mapView.indexOf(neuronId)),
  computedEpochs: () => app.mapView.shown?.computed.map((c) => c.epoch) ?? [],
  /** How the page hears of new epochs: "events" (the server's event stream), "polling" or "off" (issue 16). */
  liveMode: () => app.live.mode,
  labels: () => Array.from(document.querySelectorAll(".map-label .fg")).map((t) => t.textContent),
};
(window as unknown as { conceptevo: typeof handle }).conceptevo = handle;

void app.start();

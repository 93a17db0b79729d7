/**
 * Export what the user sees: the map as a PNG (drawn afresh at 2× with its labels and legend), the visible
 * points or a ranking as CSV; a chart as a standalone SVG (its document: charts/health.ts).
 */

import type { Points } from "./api/columns";
import type { Layer } from "./api/types";
import type { NeuronIndex } from "./data";
import { indicesIn } from "./map/extent";
import type { MapStyle, MapView } from "./map/mapview";
import type { Legend } from "./map/style";
import type { ZoomBox } from "./state/url";

export function download(filename: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** RFC 4180 CSV: a header row, then one row per record; fields quoted where needed. */
export function toCsv(header: string[], rows: (string | number | null)[][]): string {
  const cell = (v: string | number | null) => {
    if (v === null) return "";
    const s = String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [header, ...rows].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
}

export const POINTS_CSV_HEADER = ["neuron_id", "run", "epoch", "layer", "channel", "x", "y"];

export function downloadCsv(filename: string, header: string[], rows: (string | number | null)[][]): void {
  download(filename, new Blob([toCsv(header, rows)], { type: "text/csv" }));
}

/** The map at 2× with its labels, a title and the legend, as a PNG download. */
export async function downloadMapPng(filename: string, map: MapView, title: string, legend: Legend | null): Promise<void> {
  const scale = 2;
  const canvas = map.renderToCanvas(scale);
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new Error("this browser cannot draw on a canvas");
  ctx.scale(scale, scale);
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.font = "600 12.5px system-ui, sans-serif";
  ctx.lineJoin = "round";
  for (const label of map.currentLabels()) {
    ctx.lineWidth = 4;
    ctx.strokeStyle = "rgba(251,251,250,0.92)";
    ctx.strokeText(label.text, label.x, label.y);
    ctx.fillStyle = "#2a2a28";
    ctx.fillText(label.text, label.x, label.y);
  }
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  ctx.font = "600 14px system-ui, sans-serif";
  ctx.fillStyle = "#1d1d1b";
  ctx.fillText(title, 14, 22);
  if (legend) drawLegend(ctx, legend, 14, 40);
  const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!blob) throw new Error("the map could not be encoded as PNG");
  download(filename, blob);
}

function drawLegend(ctx: CanvasRenderingContext2D, legend: Legend, x: number, y: number): void {
  ctx.font = "600 12px system-ui, sans-serif";
  ctx.fillText(legend.title, x, y);
  ctx.font = "12px system-ui, sans-serif";
  if (legend.kind === "categorical") {
    legend.entries
      .filter((e) => !e.off)
      .forEach((e, i) => {
        const yy = y + 18 + i * 17;
        ctx.fillStyle = e.colour;
        ctx.beginPath();
        ctx.arc(x + 5, yy - 4, 5, 0, 2 * Math.PI);
        ctx.fill();
        ctx.fillStyle = "#1d1d1b";
        ctx.fillText(`${e.label} (${e.count})`, x + 16, yy);
      });
  } else {
    const w = 160;
    const gradient = ctx.createLinearGradient(x, 0, x + w, 0);
    legend.colours.forEach((c, i) => gradient.addColorStop(i / (legend.colours.length - 1), c));
    ctx.fillStyle = gradient;
    ctx.fillRect(x, y + 8, w, 10);
    ctx.fillStyle = "#1d1d1b";
    ctx.fillText(legend.low, x, y + 32);
    ctx.textAlign = "right";
    ctx.fillText(legend.high, x + w, y + 32);
    ctx.textAlign = "left";
  }
}

/** What {@link visibleRows} needs of a shown snapshot. */
export interface ShownPoints {
  runName: string;
  epoch: number;
  points: Points;
  layers: Layer[];
  neurons: NeuronIndex;
  style: MapStyle | null;
}

/** CSV rows (see {@link POINTS_CSV_HEADER}) of the points visible on `map`: inside its view, layer shown. */
export function visibleRows(map: MapView, d: ShownPoints): (string | number)[][] {
  const box: ZoomBox = map.zoomBox() ?? [-Infinity, -Infinity, Infinity, Infinity];
  const layerName = new Map(d.layers.map((l) => [l.idx, l.name]));
  const rows: (string | number)[][] = [];
  for (const i of indicesIn(d.points, box)) {
    if (d.style?.visible && !d.style.visible[i]) continue;
    const id = d.points.neuronId[i];
    rows.push([id, d.runName, d.epoch, layerName.get(d.points.layerIdx[i]) ?? d.points.layerIdx[i], d.neurons.channel.get(id) ?? "", d.points.x[i], d.points.y[i]]);
  }
  return rows;
}

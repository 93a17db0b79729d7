/** The hover tooltip: a neuron's layer, channel, dominant class and three patch thumbnails (lazy, cached). */

import { h, setChildren } from "./dom";

const imageCache = new Map<string, HTMLImageElement>();

/** A thumbnail `<img>` for `url`: the first request loads it, later ones reuse the decoded image. */
export function thumbnail(url: string, alt: string, className = "thumb"): HTMLImageElement {
  let cached = imageCache.get(url);
  if (!cached) {
    cached = h("img", { src: url, alt, decoding: "async", loading: "eager" });
    imageCache.set(url, cached);
    if (imageCache.size > 2000) imageCache.delete(imageCache.keys().next().value as string);
  }
  const img = cached.cloneNode() as HTMLImageElement;
  img.className = className;
  img.alt = alt;
  return img;
}

export interface TooltipContent {
  title: string;
  lines: string[];
  thumbs: { url: string; alt: string }[];
}

export class Tooltip {
  readonly element = h("div", { class: "tooltip", role: "tooltip", "data-testid": "tooltip" });
  private key = "";

  constructor() {
    this.element.style.display = "none";
    document.body.appendChild(this.element);
  }

  show(key: string, clientX: number, clientY: number, content: () => TooltipContent): void {
    if (key !== this.key) {
      this.key = key;
      const c = content();
      setChildren(
        this.element,
        h("div", { class: "tooltip-title" }, c.title),
        ...c.lines.map((line) => h("div", { class: "tooltip-line" }, line)),
        c.thumbs.length ? h("div", { class: "tooltip-thumbs" }, ...c.thumbs.map((t) => thumbnail(t.url, t.alt))) : null,
      );
    }
    this.element.style.display = "block";
    const pad = 14;
    const w = this.element.offsetWidth;
    const hgt = this.element.offsetHeight;
    const x = clientX + pad + w > window.innerWidth ? clientX - pad - w : clientX + pad;
    const y = clientY + pad + hgt > window.innerHeight ? clientY - pad - hgt : clientY + pad;
    this.element.style.transform = `translate(${Math.max(4, x)}px, ${Math.max(4, y)}px)`;
  }

  hide(): void {
    this.key = "";
    this.element.style.display = "none";
  }

  get visible(): boolean {
    return this.element.style.display !== "none";
  }
}

let shared: Tooltip | null = null;

/** The one hover tooltip of the maps (map and compare views are never shown at once). */
export function mapTooltip(): Tooltip {
  return (shared ??= new Tooltip());
}

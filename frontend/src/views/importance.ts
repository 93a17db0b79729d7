/** (being written) */

import type { ViewState } from "../state/url";
import { h } from "../ui/dom";
import type { ViewContext, ViewController } from "./view";

export class ImportanceView implements ViewController {
  readonly element = h("section", { class: "view importance-view" });
  idle = true;

  constructor(private readonly ctx: ViewContext) {}

  async render(_state: ViewState): Promise<void> {
    void this.ctx;
    this.element.textContent = "This view is being written.";
  }
}

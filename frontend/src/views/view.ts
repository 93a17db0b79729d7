/** What every view of the page implements, and what the shell gives it. */

import type { DataCache } from "../data";
import type { JobWatcher } from "../jobs";
import type { StateStore } from "../state/store";
import type { ViewState } from "../state/url";

export interface ViewContext {
  data: DataCache;
  store: StateStore;
  jobs: JobWatcher;
  /** Show an error in the page's banner (null hides it). Messages are the API's `detail`, as is. */
  showError: (message: string | null) => void;
}

export interface ViewController {
  readonly element: HTMLElement;
  /** Bring the view to `state`; called on every state change while the view is shown, and when it is shown. */
  render(state: ViewState): Promise<void>;
  /** Jobs finished and the data cache was refreshed: show what is new. */
  onDataRefreshed?(): void;
  /** True while nothing is loading (tests wait for it). */
  readonly idle: boolean;
}

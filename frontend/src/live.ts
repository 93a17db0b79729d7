/**
 * Runs watched while they train (issue 16): the page listens to the server's event stream (`GET /api/events`,
 * server-sent events) and hears when an epoch is placed, a job moves, an alarm is raised or a run stops being
 * live. Where the stream cannot be opened (a proxy that buffers, an old browser) it falls back to polling
 * `/api/live` and `/api/alerts`; new epochs then still arrive through the job watcher's polling.
 */

import { getJson } from "./api/client";

/** An alarm raised on a run while it trained (`GET /api/alerts`). */
export interface Alert {
  id: number;
  run_id: number;
  run: string;
  space_id: number;
  reference_run_id: number | null;
  metric: string;
  rule: string;
  start_epoch: number;
  accuracy_epoch: number | null;
  lead: number | null;
  reason: string;
  created_at: string;
  updated_at: string;
}

/** A `snapshot` event: an epoch placed in a space. */
export interface Placed {
  space_id: number;
  snapshot_id: number;
  run_id: number;
  epoch: number;
}

export interface LiveHandlers {
  /** Epochs were placed (batched: called at most every `debounceMs`). */
  onPlaced(placed: Placed[]): void;
  /** A job was queued, moved or ended (the job watcher should look now). */
  onJob(): void;
  /** The live runs or the alerts changed. */
  onStatus(): void;
}

/** Insert or replace an alert by id, oldest first (pure; unit-tested). */
export function mergeAlert(alerts: Alert[], alert: Alert): Alert[] {
  const others = alerts.filter((a) => a.id !== alert.id);
  return [...others, alert].sort((a, b) => a.id - b.id);
}

/** The epoch "follow newest" shows: the newest computed epoch when it is newer than the shown one, else null. */
export function followTarget(computedEpochs: number[], shown: number | null): number | null {
  if (!computedEpochs.length) return null;
  const newest = Math.max(...computedEpochs);
  return shown === null || newest > shown ? newest : null;
}

/** One line on an alert for people: where it started, its lead over the accuracy, and why. */
export function describeAlert(a: Alert): string {
  const lead = a.lead !== null && a.lead > 0 ? ` — ${a.lead} epoch${a.lead === 1 ? "" : "s"} before accuracy fell behind` : "";
  return `${a.run}, from epoch ${a.start_epoch}${lead}: ${a.reason}`;
}

export class LiveFeed {
  liveRuns = new Set<number>();
  alerts: Alert[] = [];
  /** How the page hears about changes: the event stream, polling, or not yet. */
  mode: "events" | "polling" | "off" = "off";

  private source: EventSource | null = null;
  private pending: Placed[] = [];
  private flushTimer = 0;
  private pollTimer = 0;
  private failures = 0;

  constructor(
    private readonly handlers: LiveHandlers,
    private readonly debounceMs = 250,
    private readonly pollMs = 5000,
  ) {}

  async start(): Promise<void> {
    await this.pollStatus();
    if (typeof EventSource === "undefined") return this.startPolling();
    this.connect();
  }

  stop(): void {
    this.source?.close();
    this.source = null;
    window.clearTimeout(this.pollTimer);
    window.clearTimeout(this.flushTimer);
    this.mode = "off";
  }

  /** Whether a run is being fed by a tracker or watcher now (the "live" badge). */
  isLive(runId: number | null | undefined): boolean {
    return runId !== null && runId !== undefined && this.liveRuns.has(runId);
  }

  private connect(): void {
    const source = new EventSource("/api/events");
    this.source = source;
    source.onopen = () => {
      this.failures = 0;
      this.mode = "events";
    };
    source.onerror = () => {
      // The browser reconnects by itself (with Last-Event-ID) after the server closes a stream; give up on the
      // stream only when it keeps failing, and poll instead.
      if (source.readyState === EventSource.CLOSED || ++this.failures >= 5) {
        source.close();
        this.source = null;
        this.startPolling();
      }
    };
    source.addEventListener("snapshot", (e) => this.queuePlaced(JSON.parse((e as MessageEvent).data) as Placed));
    source.addEventListener("job", () => this.handlers.onJob());
    source.addEventListener("alert", (e) => {
      this.alerts = mergeAlert(this.alerts, JSON.parse((e as MessageEvent).data) as Alert);
      this.handlers.onStatus();
    });
    source.addEventListener("live", (e) => {
      const { runs } = JSON.parse((e as MessageEvent).data) as { runs: number[] };
      this.liveRuns = new Set(runs);
      this.handlers.onStatus();
    });
  }

  private queuePlaced(placed: Placed): void {
    this.pending.push(placed);
    if (this.flushTimer) return;
    this.flushTimer = window.setTimeout(() => {
      this.flushTimer = 0;
      const batch = this.pending;
      this.pending = [];
      this.handlers.onPlaced(batch);
    }, this.debounceMs);
  }

  private startPolling(): void {
    this.mode = "polling";
    window.clearTimeout(this.pollTimer);
    const tick = async () => {
      await this.pollStatus();
      this.pollTimer = window.setTimeout(() => void tick(), document.hidden ? 4 * this.pollMs : this.pollMs);
    };
    this.pollTimer = window.setTimeout(() => void tick(), this.pollMs);
  }

  private async pollStatus(): Promise<void> {
    try {
      const [live, alerts] = await Promise.all([getJson<{ runs: { run_id: number }[] }>("/api/live"), getJson<Alert[]>("/api/alerts")]);
      const runs = new Set(live.runs.map((r) => r.run_id));
      const changed = runs.size !== this.liveRuns.size || [...runs].some((r) => !this.liveRuns.has(r)) || JSON.stringify(alerts) !== JSON.stringify(this.alerts);
      this.liveRuns = runs;
      this.alerts = alerts;
      if (changed) this.handlers.onStatus();
    } catch {
      /* the server is away; the job watcher already says so in the header */
    }
  }
}

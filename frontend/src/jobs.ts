/**
 * Live job progress: polls the queue every second (every 5 s while the tab is hidden), hands each poll's
 * active jobs to the `onChange` listeners (progress moves even when the set of jobs does not) and tells the
 * `onFinished` listeners which jobs ended, so new results appear without a reload.
 */

import { api } from "./api/client";
import type { Job } from "./api/types";

export type JobsListener = (active: Job[]) => void;
export type FinishedListener = (finished: Job[]) => void;

export class JobWatcher {
  active: Job[] = [];
  /** Messages of the jobs seen running, newest last (what the worker said, e.g. per training epoch). */
  readonly log: { jobId: number; kind: string; message: string; at: number }[] = [];
  lastError: string | null = null;
  private readonly listeners = new Set<JobsListener>();
  private readonly finishedListeners = new Set<FinishedListener>();
  private timer = 0;
  private busy = false;

  onChange(listener: JobsListener): void {
    this.listeners.add(listener);
  }

  onFinished(listener: FinishedListener): void {
    this.finishedListeners.add(listener);
  }

  start(): void {
    void this.poll();
  }

  /** Poll now (after the page queued a job). */
  poke(): void {
    window.clearTimeout(this.timer);
    void this.poll();
  }

  private schedule(): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.poll(), document.hidden ? 5000 : 1000);
  }

  private async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const active = await api.jobs("?status=running&status=queued&limit=500");
      this.lastError = null;
      const ids = new Set(active.map((j) => j.id));
      const gone = this.active.filter((j) => !ids.has(j.id));
      for (const job of active) {
        const last = this.log.length ? this.log[this.log.length - 1] : null;
        if (job.status === "running" && job.message && !(last && last.jobId === job.id && last.message === job.message)) {
          this.log.push({ jobId: job.id, kind: job.kind, message: job.message, at: Date.now() });
          if (this.log.length > 200) this.log.shift();
        }
      }
      this.active = active;
      for (const l of this.listeners) l(active);
      if (gone.length) {
        const finished = await Promise.all(gone.map((j) => api.job(j.id).catch(() => j)));
        for (const l of this.finishedListeners) l(finished);
      }
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      for (const l of this.listeners) l(this.active);
    } finally {
      this.busy = false;
      this.schedule();
    }
  }
}

/** A short human description of a job. */
export function describeJob(
  job: Job,
  runName: (id: number) => string,
  snapshotLabel?: (snapshotId: number) => string | null,
): string {
  const p = job.params;
  switch (job.kind) {
    case "demo":
      return "Building the demo world";
    case "build_space":
      return `Building space${p.name ? ` “${String(p.name)}”` : ""}`;
    case "add_snapshot": {
      const where = snapshotLabel?.(Number(p.snapshot_id));
      return where ? `Placing ${where} in space ${String(p.space_id)}` : `Placing snapshot ${String(p.snapshot_id)} in space ${String(p.space_id)}`;
    }
    case "importance":
      return `Importance: ${runName(Number(p.run_id))} epoch ${String(p.epoch_from)} → ${String(p.epoch_to)}`;
    case "revert_eval":
      return `Reversion check: ${runName(Number(p.run_id))} epoch ${String(p.epoch_from)} → ${String(p.epoch_to)}`;
    default:
      return job.kind;
  }
}

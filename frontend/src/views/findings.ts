/**
 * View 7 — findings: the space's evaluation report (issue 14), as the worker's `eval` job wrote it
 * (`GET /api/spaces/{id}/report`). One section per finding of the paper — reversion, diversity, movement,
 * alignment measured with ground truth, sensitivity, tied stimuli — each with its plot, one sentence on what the
 * paper found and one on what this run shows, and the tables (reversion per stage, alignment per setting).
 * With no report yet, a button queues the `eval` job and the view shows its progress until the report appears.
 * One run is not a finding: when `conceptevo eval-seeds` has combined several worlds' reports into the space's
 * report folder (`GET /api/spaces/{id}/report/seeds`), a block on top says per finding its mean ± std over the
 * seeds and whether it holds for every seed, with a per-seed table; without one, a line gives the command.
 */

import { ApiError, api, getJson } from "../api/client";
import type { Job } from "../api/types";
import type { ViewState } from "../state/url";
import { fmt, h, pct, setChildren } from "../ui/dom";
import type { ViewContext, ViewController } from "./view";

interface Section {
  paper: string;
  run: string;
  plot: string | null;
  plot_dim?: string | null;
}

interface StageTable {
  label: string;
  epoch_from: number;
  epoch_to: number;
  rows: string[];
  columns: string[];
  mean: number[][];
  std: number[][];
  order_holds: Record<string, boolean>;
}

interface Score {
  agreement: number;
  auc: number;
  queries: number;
}

/** What the view reads of `results.json` (the rest is there for other readers). */
export interface ReportResults {
  space: { id: number; name: string; base_run: string; base_epoch: number };
  timings: { total_s?: number };
  sections: Record<string, Section>;
  reversion?: { stages: StageTable[] };
  alignment?: { settings?: Record<string, Record<string, Score | null>>; error?: string };
}

export interface Report {
  space_id: number;
  space_name: string;
  ready: boolean;
  results: ReportResults | null;
  files: Record<string, string>;
  /** A summary over several worlds exists (`GET /api/spaces/{id}/report/seeds`). */
  seeds?: boolean;
}

/** One finding over several worlds (`conceptevo eval-seeds`): each world's value and verdict. */
export interface SeedFinding {
  key: string;
  title: string;
  paper: string;
  measure: string;
  /** The measure in a few words ("intruder AUC across models"). */
  short?: string;
  /** auc: a score in [0, 1]; change: a signed difference; epochs: a signed whole number of epochs. */
  unit?: "auc" | "change" | "epochs";
  values: (number | null)[];
  mean: number | null;
  std: number | null;
  holds: boolean[];
  holds_for_every_seed: boolean;
}

export interface SeedsSummary {
  space_id: number;
  space_name: string;
  worlds: number;
  labels: string[];
  findings: SeedFinding[];
  files: Record<string, string>;
}

/** The command that combines several worlds' reports (README, Findings, gives the whole sequence). */
export const SEEDS_COMMAND = "conceptevo eval-seeds REPORT_DIR REPORT_DIR … --labels 0,1,2";

const TITLES: [string, string][] = [
  ["reversion", "Reversion of important evolutions (Table 1)"],
  ["diversity", "Concept diversity under a too-high learning rate (§4.5)"],
  ["movement", "Movement of concepts, healthy vs overfitting (§4.5)"],
  ["alignment", "Alignment, measured with ground truth (Fig 5)"],
  ["sensitivity", "Sensitivity to k and dim"],
  ["ties", "Tied stimuli (flat maps)"],
];

/** A signed change for the reversion table: +0.012 ± 0.003. */
export function change(mean: number, std: number): string {
  return `${mean >= 0 ? "+" : "−"}${Math.abs(mean).toFixed(3)} ± ${std.toFixed(3)}`;
}

/** A signed value with a true minus sign: −0.060, +0.100; "–" for none. */
export function signed(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${value < 0 ? "−" : "+"}${Math.abs(value).toFixed(digits)}`;
}

/** One world's value of a finding as its unit reads: an AUC plain (0.892), a change signed (−0.075), epochs
 * as a signed whole number (+1); "–" for none. */
export function seedValue(value: number | null | undefined, unit: SeedFinding["unit"] = "change"): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (unit === "auc") return value.toFixed(3);
  return unit === "epochs" ? signed(value, 0) : signed(value);
}

/** Mean ± std of a finding over the seeds (a mean of whole epochs keeps its decimals). */
export function seedMean(finding: SeedFinding): string {
  const mean = seedValue(finding.mean, finding.unit === "auc" ? "auc" : "change");
  return finding.std === null ? mean : `${mean} ± ${finding.std.toFixed(3)}`;
}

/** The line of a finding over the seeds:
 * "over 3 seeds: overfit − healthy movement −0.060 ± 0.036; holds for every seed: no (2 of 3)". */
export function seedsLine(finding: SeedFinding): string {
  const n = finding.holds.length;
  const held = finding.holds.filter((h) => h).length;
  const verdict = finding.holds_for_every_seed ? "yes" : `no (${held} of ${n})`;
  const what = finding.short ? `${finding.short} ` : "";
  return `over ${n} seeds: ${what}${seedMean(finding)}; holds for every seed: ${verdict}`;
}

/** The active `eval` job of a space, if any. */
export function evalJobOf(active: Job[], spaceId: number): Job | undefined {
  return active.find((j) => j.kind === "eval" && Number(j.params.space_id) === spaceId);
}

export class FindingsView implements ViewController {
  readonly element = h("section", { class: "view findings-view", "data-testid": "findings-view" });
  idle = false;
  private generation = 0;
  private spaceId: number | null = null;
  private readonly progress = h("p", { class: "findings-progress", "data-testid": "findings-progress" });

  constructor(private readonly ctx: ViewContext) {
    ctx.jobs.onChange((active) => this.showProgress(active));
  }

  async render(state: ViewState): Promise<void> {
    const gen = ++this.generation;
    this.idle = false;
    try {
      const { data } = this.ctx;
      if (!data.spaces.length) {
        this.spaceId = null;
        setChildren(this.element, h("div", { class: "card" }, h("h2", {}, "No space yet"), h("p", {}, "Build one first (", h("code", {}, "conceptevo demo"), "); its findings appear here.")));
        return;
      }
      const spaceId = state.space ?? data.spaces[data.spaces.length - 1].id;
      const report = await getJson<Report>(`/api/spaces/${spaceId}/report`);
      const seeds = report.seeds ? await getJson<SeedsSummary>(`/api/spaces/${spaceId}/report/seeds`) : null;
      if (gen !== this.generation) return;
      this.spaceId = spaceId;
      if (!report.ready || !report.results) this.showEmpty(report, seeds);
      else this.showReport(report, report.results, seeds);
      this.showProgress(this.ctx.jobs.active);
    } catch (err) {
      if (gen !== this.generation) return;
      const message = err instanceof ApiError ? err.detail : err instanceof Error ? err.message : String(err);
      setChildren(this.element, h("div", { class: "card" }, h("h2", {}, "The report could not be loaded"), h("p", { class: "error" }, message)));
    } finally {
      if (gen === this.generation) this.idle = true;
    }
  }

  onDataRefreshed(): void {
    void this.render(this.ctx.store.get());
  }

  private runButton(label: string): HTMLButtonElement {
    const button = h("button", { type: "button", class: "primary", "data-testid": "findings-run" }, label);
    button.addEventListener("click", () => void this.queue(button));
    return button;
  }

  private async queue(button: HTMLButtonElement): Promise<void> {
    if (this.spaceId === null) return;
    button.disabled = true;
    try {
      await api.createJob("eval", { space_id: this.spaceId });
      this.progress.textContent = "Queued: a worker will compute the report.";
      this.ctx.jobs.poke();
    } catch (err) {
      button.disabled = false;
      this.ctx.showError(err instanceof ApiError ? err.detail : String(err));
    }
  }

  private showProgress(active: Job[]): void {
    if (this.spaceId === null) return;
    const job = evalJobOf(active, this.spaceId);
    if (!job) return;
    this.progress.textContent =
      job.status === "queued" ? `Evaluation job #${job.id} queued — waiting for a worker.` : `Evaluation job #${job.id}: ${pct(job.progress)} — ${job.message}`;
  }

  private showEmpty(report: Report, seeds: SeedsSummary | null): void {
    setChildren(
      this.element,
      h(
        "div",
        { class: "card", "data-testid": "findings-empty" },
        h("h2", {}, `No evaluation report for space “${report.space_name}” yet`),
        h("p", {}, "The evaluation recomputes the paper's findings on this space from the store and the checkpoints (about 5 minutes for the demo world)."),
        this.runButton("Run the evaluation"),
        this.progress,
      ),
      seeds ? this.seedsBlock(seeds) : null,
    );
  }

  /** The findings over several worlds: a line per finding, then one compact table of every seed's value. */
  private seedsBlock(seeds: SeedsSummary): HTMLElement {
    const every = seeds.findings.filter((f) => f.holds_for_every_seed).length;
    const mark = (holds: boolean) => h("span", { class: `seed-mark ${holds ? "holds" : "fails"}` }, holds ? "✓" : "✗");
    return h(
      "section",
      { class: "findings-section findings-seeds", "data-testid": "findings-seeds" },
      h("h3", {}, `Over ${seeds.worlds} seeds: which findings hold for every seed`),
      h(
        "p",
        { class: "muted" },
        `One run is not a finding: the same figures from ${seeds.worlds} worlds' reports (seeds ${seeds.labels.join(", ")}), mean ± sample std; ${every} of ${seeds.findings.length} findings hold on every seed. `,
        seeds.files["seeds.md"] ? h("a", { href: seeds.files["seeds.md"] }, "seeds.md") : null,
      ),
      seeds.findings.map((f) =>
        h(
          "div",
          { class: "findings-seed", "data-testid": `seed-finding-${f.key}` },
          h("h4", {}, f.title),
          h("p", { class: "findings-paper" }, h("strong", {}, "Paper: "), f.paper),
          h("p", { class: "findings-run", title: f.measure }, mark(f.holds_for_every_seed), " ", seedsLine(f)),
        ),
      ),
      h(
        "table",
        { class: "findings-table seeds-table", "data-testid": "seeds-table" },
        h("caption", {}, "Per seed: the measure (hover a finding for what it is) and whether the finding holds (✓ / ✗)"),
        h("thead", {}, h("tr", {}, h("th", {}, "finding"), seeds.labels.map((l) => h("th", {}, `seed ${l}`)), h("th", {}, "mean ± std"), h("th", {}, "every seed"))),
        h(
          "tbody",
          {},
          seeds.findings.map((f) =>
            h(
              "tr",
              {},
              h("th", { title: f.measure }, f.title),
              f.values.map((v, i) => h("td", {}, `${seedValue(v, f.unit)} `, mark(f.holds[i] ?? false))),
              h("td", {}, seedMean(f)),
              h("td", {}, mark(f.holds_for_every_seed), f.holds_for_every_seed ? " yes" : " no"),
            ),
          ),
        ),
      ),
    );
  }

  private seedsHint(): HTMLElement {
    return h(
      "p",
      { class: "muted", "data-testid": "findings-seeds-hint" },
      "One run is not a finding: to see which findings hold for every seed, build the world with seeds 0, 1, 2, evaluate each and combine them with ",
      h("code", {}, SEEDS_COMMAND),
      " (README, Findings).",
    );
  }

  private showReport(report: Report, results: ReportResults, seeds: SeedsSummary | null): void {
    const sections = TITLES.map(([key, title]) => {
      const said = results.sections[key];
      if (!said) return null;
      const plots = [said.plot, said.plot_dim].filter((p): p is string => !!p && !!report.files[p]);
      return h(
        "section",
        { class: "findings-section", "data-testid": `finding-${key}` },
        h("h3", {}, title),
        h("p", { class: "findings-paper" }, h("strong", {}, "Paper: "), said.paper),
        h("p", { class: "findings-run" }, h("strong", {}, "This run: "), said.run),
        plots.map((p) => h("img", { src: report.files[p], alt: `${title} — plot`, class: "findings-plot", width: 520, height: 300 })),
        key === "reversion" ? this.reversionTables(results) : null,
        key === "alignment" ? this.alignmentTable(results) : null,
      );
    });
    setChildren(
      this.element,
      h(
        "div",
        { class: "findings" },
        h("h2", {}, `Findings — space “${results.space.name}”`),
        h(
          "p",
          { class: "muted" },
          `Computed in ${fmt(results.timings.total_s ?? null, 0)} s by the eval job from the store and the checkpoints; base ${results.space.base_run}@${results.space.base_epoch}. `,
          report.files["report.md"] ? h("a", { href: report.files["report.md"] }, "report.md") : null,
          " ",
          report.files["results.json"] ? h("a", { href: report.files["results.json"] }, "results.json") : null,
        ),
        seeds ? this.seedsBlock(seeds) : this.seedsHint(),
        sections,
        h("p", {}, this.runButton("Run the evaluation again"), this.progress),
      ),
    );
  }

  private reversionTables(results: ReportResults): HTMLElement[] {
    return (results.reversion?.stages ?? []).map((stage) =>
      h(
        "table",
        { class: "findings-table", "data-testid": "reversion-table" },
        h("caption", {}, `${stage.label}: ordering ${stage.order_holds.train_top1 ? "holds" : "does not hold"} (train top-1)`),
        h("thead", {}, h("tr", {}, h("th", {}, "bin"), stage.columns.map((c) => h("th", {}, c)))),
        h(
          "tbody",
          {},
          stage.rows.map((row, i) => h("tr", {}, h("th", {}, row), stage.columns.map((_c, j) => h("td", {}, change(stage.mean[i][j], stage.std[i][j]))))),
        ),
      ),
    );
  }

  private alignmentTable(results: ReportResults): HTMLElement | null {
    const settings = results.alignment?.settings;
    if (!settings) return null;
    const names = Object.keys(Object.values(settings)[0] ?? {});
    return h(
      "table",
      { class: "findings-table", "data-testid": "alignment-table" },
      h("caption", {}, "Simulated intruder test: ROC AUC (kNN agreement)"),
      h("thead", {}, h("tr", {}, h("th", {}, "setting"), names.map((n) => h("th", {}, n)))),
      h(
        "tbody",
        {},
        Object.entries(settings).map(([setting, row]) =>
          h("tr", {}, h("th", {}, setting.replace("_", " ")), names.map((n) => h("td", {}, row[n] ? `${fmt(row[n]!.auc, 3)} (${fmt(row[n]!.agreement, 3)})` : "–"))),
        ),
      ),
    );
  }
}

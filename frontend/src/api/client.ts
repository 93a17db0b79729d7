/** The typed HTTP client: every request of the page goes through here (one place for errors and tokens). */

import { decodeConcepts, decodePoints, type Concepts, type Points } from "./columns";
import type {
  Dataset,
  Health,
  ImportanceInfo,
  ImportanceRanking,
  ImportanceScores,
  Job,
  Layer,
  Neighbours,
  NeuronAtSnapshot,
  NeuronImportance,
  Run,
  RunMetrics,
  RunNeurons,
  RunSummary,
  Space,
  SpaceSummary,
  Trajectory,
} from "./types";

/** An API answer that is not 2xx: its status and the server's `detail` (shown to the user as is). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly path: string,
  ) {
    super(detail);
  }
}

const TOKEN_KEY = "conceptevo.token";

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lives for this request only */
  }
}

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "the ConceptEvo server cannot be reached — is `conceptevo serve` running?", path);
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = (await response.json()) as { detail?: unknown };
      if (typeof body.detail === "string") detail = body.detail;
      else if (Array.isArray(body.detail))
        detail = body.detail.map((d: { msg?: string }) => d.msg ?? JSON.stringify(d)).join("; ");
    } catch {
      /* not JSON: keep the status line */
    }
    throw new ApiError(response.status, detail, path);
  }
  return response;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await request(path)).json()) as T;
}

async function getBuffer(path: string): Promise<ArrayBuffer> {
  return (await request(path)).arrayBuffer();
}

async function write<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await request(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await response.json()) as T;
}

export const api = {
  health: () => getJson<Health>("/api/health"),
  datasets: () => getJson<Dataset[]>("/api/datasets"),
  runs: () => getJson<RunSummary[]>("/api/runs"),
  run: (runId: number) => getJson<Run>(`/api/runs/${runId}`),
  layers: (runId: number) => getJson<Layer[]>(`/api/runs/${runId}/layers`),
  runNeurons: (runId: number) => getJson<RunNeurons>(`/api/runs/${runId}/neurons`),
  metrics: (runId: number, spaceId: number) => getJson<RunMetrics>(`/api/runs/${runId}/metrics?space_id=${spaceId}`),
  spaces: () => getJson<SpaceSummary[]>("/api/spaces"),
  space: (spaceId: number) => getJson<Space>(`/api/spaces/${spaceId}`),
  points: async (spaceId: number, snapshotId: number): Promise<Points> =>
    decodePoints(await getBuffer(`/api/spaces/${spaceId}/snapshots/${snapshotId}/points`)),
  concepts: async (spaceId: number, snapshotId: number): Promise<Concepts> =>
    decodeConcepts(await getBuffer(`/api/spaces/${spaceId}/snapshots/${snapshotId}/concepts`)),
  neuronAt: (spaceId: number, snapshotId: number, neuronId: number) =>
    getJson<NeuronAtSnapshot>(`/api/spaces/${spaceId}/snapshots/${snapshotId}/neurons/${neuronId}`),
  trajectory: (spaceId: number, neuronId: number) =>
    getJson<Trajectory>(`/api/spaces/${spaceId}/neurons/${neuronId}/trajectory`),
  neighbours: (spaceId: number, snapshotId: number, neuronId: number, k = 10) =>
    getJson<Neighbours>(`/api/spaces/${spaceId}/snapshots/${snapshotId}/neurons/${neuronId}/neighbours?k=${k}`),
  neuronImportance: (neuronId: number) => getJson<NeuronImportance[]>(`/api/neurons/${neuronId}/importance`),
  importances: (runId?: number) => getJson<ImportanceInfo[]>(runId ? `/api/importance?run_id=${runId}` : "/api/importance"),
  ranking: (importanceId: number, limit = 20, offset = 0) =>
    getJson<ImportanceRanking>(`/api/importance/${importanceId}?limit=${limit}&offset=${offset}`),
  scores: (importanceId: number) => getJson<ImportanceScores>(`/api/importance/${importanceId}/scores`),
  jobs: (query = "") => getJson<Job[]>(`/api/jobs${query}`),
  job: (jobId: number) => getJson<Job>(`/api/jobs/${jobId}`),
  createJob: (kind: string, params: Record<string, unknown>, priority = 0) =>
    write<Job>("POST", "/api/jobs", { kind, params, priority }),
  cancelJob: (jobId: number) => write<Job>("POST", `/api/jobs/${jobId}/cancel`),
  retryJob: (jobId: number) => write<Job>("POST", `/api/jobs/${jobId}/retry`),
};

/** URL of one patch tile, and of a neuron's whole sprite (its k patches side by side). */
export const patchUrl = (snapshotId: number, neuronId: number, rank: number) =>
  `/api/patches/${snapshotId}/${neuronId}/${rank}`;
export const spriteUrl = (snapshotId: number, neuronId: number) => `/api/patches/${snapshotId}/${neuronId}/sprite`;

/** Messages between the orchestrator and a host process (typed unions, validated on receipt). */
import type { HostReport, HostSpec } from '../../hypervisor/host/host.js';

export type ToHost = { kind: 'run'; spec: HostSpec; duration_ms: number; progress_ms: number } | { kind: 'stop' };

export interface Progress {
  elapsed_ms: number;
  accesses: number;
  hypercalls: number;
  violations: number;
  heartbeats: number[];
}

export type FromHost =
  | { kind: 'started'; threads: number; boot_ms: number }
  | { kind: 'progress'; progress: Progress }
  | { kind: 'report'; report: HostReport }
  | { kind: 'error'; message: string; stack?: string };

export function decodeToHost(x: unknown): ToHost | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const k = (x as { kind?: unknown }).kind;
  if (k === 'stop') return { kind: 'stop' };
  if (k === 'run' && typeof (x as { duration_ms?: unknown }).duration_ms === 'number') return x as ToHost;
  return undefined;
}

export function decodeFromHost(x: unknown): FromHost | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const k = (x as { kind?: unknown }).kind;
  return k === 'started' || k === 'progress' || k === 'report' || k === 'error' ? (x as FromHost) : undefined;
}

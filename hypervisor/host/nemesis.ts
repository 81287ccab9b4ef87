/** The nemeses of `xgsim chaos` as data: their kinds, one concrete action, and its log line (chaos.ts carries them out). */

export const NEMESIS_KINDS = [
  'kill-device-model',
  'crash-domain',
  'destroy-mid-map',
  'memory-pressure',
  'redis-kill',
  'redis-pause',
  'ioreq-delay',
  'ioreq-duplicate',
  'ioreq-drop',
  'ioreq-reorder',
  'hang-vcpu',
  'adversary-on',
] as const;
export type NemesisKind = (typeof NEMESIS_KINDS)[number];

/** One concrete injection: what, when (ms after start), against whom, for how long. */
export interface NemesisAction {
  at_ms: number;
  kind: NemesisKind;
  /** Domain name; omitted: a fitting one chosen with the run's seed. */
  target?: string;
  /** hang-vcpu: which vCPU (default: chosen). */
  vcpu?: number;
  /** Window of the windowed kinds (hold of kill-device-model, hang, pause, pressure, ioreq-*). */
  for_ms?: number;
  /** ioreq-delay: how long each batch is held. */
  delay_ms?: number;
  /** memory-pressure: extra MMU-notifier evictions per second. */
  rate?: number;
  /** Where it came from: the plan's schedule, or a random rate. */
  source?: 'schedule' | 'random';
}

/** The log line of an injection (the Summary's `faults_injected`, extended). */
export interface Injection {
  at_ms: number;
  kind: NemesisKind;
  target: string;
  detail?: string;
  /** Why it did nothing (no live target, not this transport, …). */
  skipped?: string;
  /** When the injection's window closed (ms after start). */
  end_ms?: number;
  /** From end_ms until every vCPU of every running domain progressed again; absent if it never did before the run ended. */
  recovery_ms?: number;
}

export const WINDOW_DEFAULT_MS: Partial<Record<NemesisKind, number>> = {
  'hang-vcpu': 1000,
  'redis-pause': 300,
  'memory-pressure': 2000,
  'ioreq-delay': 1000,
  'ioreq-duplicate': 1000,
  'ioreq-drop': 1000,
  'ioreq-reorder': 1000,
};

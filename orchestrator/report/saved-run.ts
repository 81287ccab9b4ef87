/**
 * A saved run (`--report dir/` writes it as dir/summary.json): the run's
 * Summary, the IOREQ round-trip histogram and the time series the report
 * plots, so `xgsim report dir/summary.json out/` renders the same report
 * again. Loading validates what the renderer reads and lets the rest pass.
 */
import { RTT_BUCKETS } from '../../hypervisor/layout/rtt-hist.js';
import { ioreqStages, STAGES, type IoreqStages } from '../trace/stages.js';
import { readInputFile } from '../config/load.js';
import { z } from 'zod';
import type { TraceData } from '../../hypervisor/host/trace-collector.js';
import { UsageError } from '../errors.js';
import type { Summary } from '../up/summary.js';

export const SAVED_RUN_FORMAT = 'xgsim-run';
/** 2 (2026-12-07): rtt_hist in log-linear buckets (layout/rtt-hist.ts); version 1 had 24 log2 buckets. */
export const SAVED_RUN_VERSION = 2;

/** Series over the run; times in ms from the moment the vCPUs started. */
export interface RunSeries {
  samples: {
    t_ms: number[];
    free_frames: number[];
    domains: Array<{ name: string; domid: number; tot_pages: number[] }>;
    /** Cumulative op counts of every vCPU (hypercalls, accesses, maps, revokes, …). */
    ops: Record<string, number[]>;
  };
  /** max_per_bin: the worst Revoke (µs) per bin of faults.bin_ms. */
  revoke: { hist: number[]; per_octave: number; points: Array<[number, number]>; count: number; max_per_bin?: number[] };
  faults: { bin_ms: number; counts: number[] };
  /** The run's injections on this time axis; end_t_ms closes a windowed one (its band on the plots). */
  injections?: Array<{ t_ms: number; end_t_ms?: number; label: string }>;
  /**
   * When every vCPU had run, on this axis: the summary's injection times
   * (`at_ms`) count from here, so the report adds it to list them on the
   * plots' time base. Absent in runs saved before it was recorded.
   */
  vcpus_running_ms?: number;
  trace: { events_kept: number; cap: number; dropped_over_cap: number; dropped_ring_full: number; truncated_at_ms: number | null };
  /** The IOREQ round trip by stage (orchestrator/trace/stages.ts), from the kept events: only a run with `--trace` keeps them. */
  ioreq_stages?: IoreqStages;
}

export interface SavedRun {
  format: typeof SAVED_RUN_FORMAT;
  version: typeof SAVED_RUN_VERSION;
  /** The command that made the run, and the one that replays it when it failed. */
  command: string;
  replay: string | null;
  summary: Summary;
  /** IOREQ round trips in hypervisor/layout/rtt-hist.ts's RTT_BUCKETS log-linear buckets (two significant digits). */
  rtt_hist: number[];
  series: RunSeries | null;
}

function stagesOf(d: TraceData): { ioreq_stages?: IoreqStages } {
  const st = d.events > 0 ? ioreqStages(d) : null;
  return st !== null ? { ioreq_stages: st } : {};
}

/** The report's series from the host's timeline aggregates. */
export function seriesOf(d: TraceData): RunSeries {
  const ms = (us: number): number => Math.round((us - d.started_us) / 10) / 100;
  return {
    samples: {
      t_ms: d.samples.t_us.map(ms),
      free_frames: d.samples.free_frames,
      domains: d.domains.map((x, i) => ({ name: x.name, domid: x.domid, tot_pages: d.samples.tot_pages[i] ?? [] })),
      ops: d.samples.ops,
    },
    revoke: {
      hist: d.revoke.hist,
      per_octave: d.revoke.per_octave,
      points: d.revoke.points.map(([t, us]) => [ms(t), Math.round(us * 10) / 10]),
      count: d.revoke.count,
      max_per_bin: d.revoke.max_per_bin.map((us) => Math.round(us * 10) / 10),
    },
    faults: { bin_ms: d.faults.bin_us / 1000, counts: d.faults.counts },
    ...(d.injections !== undefined ? { injections: d.injections.map((i) => ({ t_ms: ms(i.at_us), ...(i.end_us !== undefined ? { end_t_ms: ms(i.end_us) } : {}), label: `${i.kind}${i.target !== '' ? ` → ${i.target}` : ''}` })) } : {}),
    ...(d.vcpus_running_us !== undefined ? { vcpus_running_ms: ms(d.vcpus_running_us) } : {}),
    ...stagesOf(d),
    trace: {
      events_kept: d.events,
      cap: d.dropped.cap,
      dropped_over_cap: d.dropped.over_cap,
      dropped_ring_full: d.dropped.ring_full.reduce((a, b) => a + b, 0),
      truncated_at_ms: d.dropped.truncated_at_us === null ? null : ms(d.dropped.truncated_at_us),
    },
  };
}

const num = z.number().finite();
const nums = z.array(num);
const counts = z.record(z.string(), num);
const StageFiguresSchema = z.looseObject({ p50: num, p99: num, mean: num });
const SeriesSchema = z.looseObject({
  samples: z.looseObject({
    t_ms: nums,
    free_frames: nums,
    domains: z.array(z.looseObject({ name: z.string(), domid: num, tot_pages: nums })),
    ops: z.record(z.string(), nums),
  }),
  revoke: z.looseObject({ hist: nums, per_octave: num.positive(), points: z.array(z.tuple([num, num])), count: num, max_per_bin: nums.optional() }),
  faults: z.looseObject({ bin_ms: num.positive(), counts: nums }),
  injections: z.array(z.looseObject({ t_ms: num, end_t_ms: num.optional(), label: z.string() })).optional(),
  vcpus_running_ms: num.optional(),
  trace: z.looseObject({ events_kept: num, cap: num, dropped_over_cap: num, dropped_ring_full: num, truncated_at_ms: num.nullable() }),
  ioreq_stages: z
    .looseObject({
      count: num,
      stages: z.partialRecord(z.enum(STAGES), StageFiguresSchema),
      total: StageFiguresSchema,
    })
    .optional(),
});
const SummarySchema = z.looseObject({
  seed: num,
  transport: z.string(),
  duration_ms: num,
  domains: z.array(z.looseObject({ name: z.string(), domid: num, state: z.string(), tot_pages: num, max_pages: num })),
  ops: counts,
  revoke_us: z.looseObject({ p50: num, p99: num, max: num }),
  ioreq: z.looseObject({ sent: num, completed: num, faults: num, duplicates_dropped: num, rtt_us: z.looseObject({ p50: num, p99: num }) }),
  faults_injected: z.array(z.looseObject({ at_ms: num, kind: z.string(), target: z.string() })),
  invariants: z.record(z.string(), z.looseObject({ checks: num, violations: num })),
  frames: z.looseObject({ total: num, free: num, conserved: z.boolean() }),
  violations: z.array(z.looseObject({ invariant: z.string(), text: z.string() })),
  errors: z.array(z.string()),
  events: z.array(z.string()),
  buggify: z.array(z.string()),
  verdict: z.enum(['pass', 'fail', 'interrupted', 'unknown']),
});
const SavedRunSchema = z.looseObject({
  format: z.literal(SAVED_RUN_FORMAT),
  version: z.literal(SAVED_RUN_VERSION),
  command: z.string(),
  replay: z.string().nullable(),
  summary: SummarySchema,
  rtt_hist: nums.length(RTT_BUCKETS),
  series: SeriesSchema.nullable(),
});

/** Read and check a saved run; anything wrong is a UsageError naming the file and the first problem. */
export function loadSavedRun(file: string): SavedRun {
  let text: string;
  try {
    text = readInputFile(file);
  } catch (e) {
    throw new UsageError(String(e)); // `file: cannot read: why`, as before
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not JSON (${(e as Error).message})`);
  }
  const r = SavedRunSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '' : `${issue.path.join('.')}: `;
    throw new UsageError(`${file}: not a saved xgsim run (${where}${issue?.message ?? 'invalid'}); --report writes one as <dir>/summary.json`);
  }
  return r.data as unknown as SavedRun;
}

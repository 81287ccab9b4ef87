/**
 * Campaign plans (`xgsim campaign <plan.yaml>`, docs/campaigns.md): a name,
 * an optional seed, and job templates — stress-revoke with its flags, up of
 * a topology, chaos of a plan, sim (one seed of the deterministic
 * simulator) — each with a weight and an optional timeout. `materializeJobs` turns a plan, a campaign seed and a run count
 * into concrete jobs: job i's seed and template are functions of the
 * campaign seed and i alone, so a campaign is reproducible job by job and a
 * job can be re-run without the others.
 *
 * Decisions:
 * - A stress-revoke template must give its `duration` (the command's 10 s
 *   default times hundreds of runs is rarely what anyone means); up and
 *   chaos fall back to their file's or command's default.
 * - `duration` is a duration or `{min, max}`: each job draws its own,
 *   uniformly, in whole ms; the job records the value it drew.
 * - Paths (`topology`, `plan`) are relative to the campaign file. Jobs carry
 *   them relative to the campaign's working directory; a host resolves them
 *   against its own, so hosts run from the same tree (the repository root,
 *   or the same image).
 * - `weight: 0` switches a template off; at least one must be positive.
 * - A job's timeout: its template's `timeout`, else the plan's, else
 *   60 s + 3 × its duration (sim: 60 s + 1 ms per step).
 * - sim: `steps` is a count or `{min, max}`, drawn per job like a duration.
 *   `strategy: mixed` (the default) is resolved here: each job draws random
 *   or pct from its seed and names it, because `xgsim sim`'s own mixed pick
 *   shares its generator with the nemesis plan — a run that names its
 *   strategy gets other nemeses than the mixed run of the same seed, so only
 *   a job that names it is replayed bit for bit by its replay command.
 */
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import { z } from 'zod';
import { MAP_WINDOW_PAGES } from '../../hypervisor/host/host.js';
import { DEFAULT_SIM_STEPS } from '../sim/sim.js';
import { ADVERSARIES } from '../up/stress.js';
import { bool, describe, duration, forwardIssues, ident, int, isRecord, list, MISSING, obj, oneOf, str, tagged } from './fields.js';
import { errorAt, parseYaml, planPath, readYamlFile, validate, type YamlSource } from './load.js';
import { loadTopology, baseName, TRANSPORTS } from './topology.js';
import { parseDuration } from './units.js';

export const JOB_KINDS = ['stress-revoke', 'up', 'chaos', 'sim'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Largest campaign seed (job seeds are 31-bit, as `--seed` takes them). */
export const MAX_CAMPAIGN_SEED = 2 ** 31 - 1;
export const MAX_TEMPLATES = 64;
export const MAX_WEIGHT = 1_000_000;
/** Longest duration of one job: campaigns are many short runs. */
export const MAX_JOB_DURATION_MS = 10 * 60_000;
export const MAX_JOB_TIMEOUT_MS = 60 * 60_000;
/** Base of the default timeout: forking a host and starting its threads can take seconds on a loaded machine. */
export const DEFAULT_TIMEOUT_BASE_MS = 60_000;
/** Most scheduling decisions of one sim job (≈ 25 000 steps/s on one core: minutes, not hours). */
export const MAX_SIM_JOB_STEPS = 10_000_000;
export const SIM_STRATEGIES = ['random', 'pct', 'mixed'] as const;

export interface DurationRange {
  readonly min_ms: number;
  readonly max_ms: number;
}

export interface CountRange {
  readonly min: number;
  readonly max: number;
}

interface TemplateBase {
  /** For reports: the template's `name`, else `<kind>#<index>`. */
  readonly name: string;
  readonly weight: number;
  readonly timeout_ms?: number;
  readonly duration?: DurationRange;
}

export type JobTemplate =
  | (TemplateBase & {
      readonly kind: 'stress-revoke';
      readonly guests: number;
      readonly vcpus: number;
      readonly backend_vcpus: number;
      readonly pages: number;
      readonly adversary: string;
      readonly duration: DurationRange;
      /** With adversary mix: every mode every seed instead of a swarm subset (docs/verification.md §2); default false. */
      readonly full_mix: boolean;
    })
  | (TemplateBase & { readonly kind: 'up'; readonly topology: string; readonly transport?: string; readonly full_mix: boolean })
  | (TemplateBase & { readonly kind: 'chaos'; readonly plan: string; readonly transport?: string; readonly full_mix: boolean })
  | (TemplateBase & {
      readonly kind: 'sim';
      /** Relative to the working directory; absent: the simulator's default topology. */
      readonly topology?: string;
      readonly steps: CountRange;
      readonly strategy: (typeof SIM_STRATEGIES)[number];
      readonly chaos: boolean;
      /** The quiet tail and its liveness checks (docs/verification.md §1); default true. */
      readonly liveness: boolean;
      /** Every behaviour every seed instead of a swarm subset (docs/verification.md §2); default false. */
      readonly full_mix: boolean;
    });

export interface CampaignPlan {
  readonly file: string;
  readonly name: string;
  readonly seed?: number;
  readonly timeout_ms?: number;
  readonly templates: readonly JobTemplate[];
}

/** One run of a campaign, as enqueued: everything a host needs, nothing it must look up. */
export interface CampaignJob {
  /** 0 … runs−1. */
  readonly index: number;
  readonly template: string;
  readonly kind: JobKind;
  /** Topology (up, sim) or chaos plan (chaos), relative to the working directory; absent for sim's default topology. */
  readonly file?: string;
  /** Flags as the CLI spells them (runs/record.ts). */
  readonly flags: Readonly<Record<string, string | boolean>>;
  readonly seed: number;
  readonly buggify: readonly string[];
  readonly timeout_ms: number;
}

// ---------------------------------------------------------------- schema

const positiveDuration = (v: unknown): { ok: true; value: number } | { ok: false; error: string } => {
  if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'bigint') return { ok: false, error: `expected a duration such as 500ms, got ${describe(v)}` };
  const r = parseDuration(v);
  if (!r.ok) return r;
  if (r.value <= 0) return { ok: false, error: `must be positive, got ${describe(v)}` };
  if (r.value > MAX_JOB_DURATION_MS) return { ok: false, error: `a campaign job runs at most ${MAX_JOB_DURATION_MS / 60_000} min` };
  return { ok: true, value: r.value };
};

const rangeSchema = obj({ min: duration(), max: duration() });

/** `500ms`, or `{min: 300ms, max: 800ms}`. */
function durationRange(): z.ZodType<DurationRange, unknown> {
  return z.unknown().transform((v, ctx): DurationRange => {
    if (v === undefined) {
      ctx.addIssue({ code: 'custom', message: MISSING });
      return z.NEVER;
    }
    if (isRecord(v)) {
      const r = rangeSchema.safeParse(v);
      if (!r.success) {
        forwardIssues(ctx, r.error.issues);
        return z.NEVER;
      }
      for (const k of ['min', 'max'] as const) {
        const c = positiveDuration(r.data[k]);
        if (!c.ok) {
          ctx.addIssue({ code: 'custom', path: [k], message: c.error });
          return z.NEVER;
        }
      }
      if (r.data.min > r.data.max) {
        ctx.addIssue({ code: 'custom', path: ['max'], message: `max (${r.data.max} ms) is below min (${r.data.min} ms)` });
        return z.NEVER;
      }
      return { min_ms: r.data.min, max_ms: r.data.max };
    }
    const c = positiveDuration(v);
    if (!c.ok) {
      ctx.addIssue({ code: 'custom', message: isRecord(v) || Array.isArray(v) ? `expected a duration such as 500ms or {min: 300ms, max: 800ms}, got ${describe(v)}` : c.error });
      return z.NEVER;
    }
    return { min_ms: c.value, max_ms: c.value };
  });
}

const countRangeSchema = obj({ min: int({ min: 1, max: MAX_SIM_JOB_STEPS }), max: int({ min: 1, max: MAX_SIM_JOB_STEPS }) });

/** `20000`, or `{min: 5000, max: 50000}`: sim steps, drawn per job like a duration. */
function stepsRange(): z.ZodType<CountRange, unknown> {
  const one = int({ min: 1, max: MAX_SIM_JOB_STEPS });
  return z.unknown().transform((v, ctx): CountRange => {
    if (isRecord(v)) {
      const r = countRangeSchema.safeParse(v);
      if (!r.success) {
        forwardIssues(ctx, r.error.issues);
        return z.NEVER;
      }
      if (r.data.min > r.data.max) {
        ctx.addIssue({ code: 'custom', path: ['max'], message: `max (${r.data.max}) is below min (${r.data.min})` });
        return z.NEVER;
      }
      return { min: r.data.min, max: r.data.max };
    }
    const r = one.safeParse(v);
    if (!r.success) {
      ctx.addIssue({ code: 'custom', message: Array.isArray(v) ? `expected a step count such as 20000 or {min: 5000, max: 50000}, got ${describe(v)}` : (r.error.issues[0]?.message ?? 'bad step count') });
      return z.NEVER;
    }
    return { min: r.data, max: r.data };
  });
}

const timeout = () =>
  duration()
    .refine((ms) => ms > 0, { message: 'must be positive' })
    .refine((ms) => ms <= MAX_JOB_TIMEOUT_MS, { message: `at most ${MAX_JOB_TIMEOUT_MS / 60_000} min` });
const kindOf = <const K extends string>(k: K) => oneOf([k] as const, 'kind');
const common = {
  name: ident().optional(),
  weight: int({ min: 0, max: MAX_WEIGHT }).default(1),
  timeout: timeout().optional(),
};

export const templateSchema = tagged(
  'kind',
  {
    'stress-revoke': obj({
      ...common,
      kind: kindOf('stress-revoke'),
      guests: int({ min: 1, max: 64 }).default(4),
      vcpus: int({ min: 1, max: 8 }).default(2),
      backend_vcpus: int({ min: 1, max: 8 }).default(2),
      pages: int({ min: 1, max: MAP_WINDOW_PAGES - 8 }).default(8),
      adversary: oneOf(ADVERSARIES, 'adversary').default('none'),
      duration: durationRange(),
      full_mix: bool().default(false),
    }),
    up: obj({ ...common, kind: kindOf('up'), topology: str(), duration: durationRange().optional(), transport: oneOf(TRANSPORTS, 'transport').optional(), full_mix: bool().default(false) }),
    chaos: obj({ ...common, kind: kindOf('chaos'), plan: str(), duration: durationRange().optional(), transport: oneOf(TRANSPORTS, 'transport').optional(), full_mix: bool().default(false) }),
    sim: obj({ ...common, kind: kindOf('sim'), topology: str().optional(), steps: stepsRange().optional(), strategy: oneOf(SIM_STRATEGIES, 'strategy').default('mixed'), chaos: bool().default(true), liveness: bool().default(true), full_mix: bool().default(false) }),
  },
  'job kind',
);

export const campaignSchema = obj({
  name: ident().optional(),
  seed: int({ max: MAX_CAMPAIGN_SEED }).optional(),
  timeout: timeout().optional(),
  jobs: list(templateSchema, { min: 1, max: MAX_TEMPLATES }),
});

// ---------------------------------------------------------------- normalization

function fromSource(src: YamlSource): CampaignPlan {
  const raw = validate(src, campaignSchema);
  /** A path of the plan, checked to exist, relative to the working directory. */
  const pathAt = (i: number, key: string, p: string): string => {
    const abs = planPath(src, ['jobs', i, key], p);
    if (!existsSync(abs)) throw errorAt(src, ['jobs', i, key], `no such file: ${relative(process.cwd(), abs) || abs} (paths are relative to the campaign file)`);
    if (statSync(abs).isDirectory()) throw errorAt(src, ['jobs', i, key], `is a directory: ${relative(process.cwd(), abs)}`);
    const rel = relative(process.cwd(), abs);
    return rel.startsWith('..') || isAbsolute(rel) ? abs : rel;
  };
  const names = new Map<string, number>();
  const templates = raw.jobs.map((t, i): JobTemplate => {
    const name = t.name ?? `${t.kind}#${i}`;
    const prev = names.get(name);
    if (prev !== undefined) throw errorAt(src, ['jobs', i, 'name'], `duplicate job name \`${name}\` (also jobs[${prev}])`);
    names.set(name, i);
    const base = { name, weight: t.weight, ...(t.timeout !== undefined ? { timeout_ms: t.timeout } : {}) };
    switch (t.kind) {
      case 'stress-revoke':
        return { ...base, kind: t.kind, guests: t.guests, vcpus: t.vcpus, backend_vcpus: t.backend_vcpus, pages: t.pages, adversary: t.adversary, duration: t.duration, full_mix: t.full_mix };
      case 'up': {
        const topology = pathAt(i, 'topology', t.topology);
        // Validated now, so a bad topology stops the campaign before any job is enqueued.
        loadTopology(topology);
        return { ...base, kind: t.kind, topology, ...(t.duration !== undefined ? { duration: t.duration } : {}), ...(t.transport !== undefined ? { transport: t.transport } : {}), full_mix: t.full_mix };
      }
      case 'chaos':
        return { ...base, kind: t.kind, plan: pathAt(i, 'plan', t.plan), ...(t.duration !== undefined ? { duration: t.duration } : {}), ...(t.transport !== undefined ? { transport: t.transport } : {}), full_mix: t.full_mix };
      case 'sim': {
        const topology = t.topology === undefined ? undefined : pathAt(i, 'topology', t.topology);
        if (topology !== undefined) loadTopology(topology);
        return { ...base, kind: t.kind, ...(topology !== undefined ? { topology } : {}), steps: t.steps ?? { min: DEFAULT_SIM_STEPS, max: DEFAULT_SIM_STEPS }, strategy: t.strategy, chaos: t.chaos, liveness: t.liveness, full_mix: t.full_mix };
      }
    }
  });
  if (templates.every((t) => t.weight === 0)) throw errorAt(src, ['jobs'], 'every job has weight 0: nothing would run');
  return {
    file: src.file,
    name: raw.name ?? baseName(src.file),
    ...(raw.seed !== undefined ? { seed: raw.seed } : {}),
    ...(raw.timeout !== undefined ? { timeout_ms: raw.timeout } : {}),
    templates,
  };
}

export function parseCampaignPlan(text: string, file: string): CampaignPlan {
  return fromSource(parseYaml(text, file));
}

export function loadCampaignPlan(file: string): CampaignPlan {
  return fromSource(readYamlFile(file));
}

// ---------------------------------------------------------------- jobs

/** murmur3's finalizer over two words: job seeds and draws from (campaign seed, index). */
export function mix32(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be59b, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function jobSeed(campaignSeed: number, index: number): number {
  return mix32(campaignSeed, index) & 0x7fffffff;
}

export interface MaterializeOptions {
  readonly seed: number;
  readonly runs: number;
  /** XGSIM_BUGGIFY names, recorded in every job. */
  readonly buggify: readonly string[];
}

export function materializeJobs(plan: CampaignPlan, o: MaterializeOptions): CampaignJob[] {
  const total = plan.templates.reduce((a, t) => a + t.weight, 0);
  if (total <= 0) throw new RangeError('materializeJobs: no template has a positive weight');
  return Array.from({ length: o.runs }, (_, index): CampaignJob => {
    const seed = jobSeed(o.seed, index);
    // Independent draws from the job's seed: which template, then its duration.
    const u = (k: number): number => mix32(seed, k) / 2 ** 32;
    let pick = u(1) * total;
    const t = plan.templates.find((x) => (pick -= x.weight) < 0) ?? plan.templates.findLast((x) => x.weight > 0);
    if (t === undefined) throw new RangeError('materializeJobs: no template picked');
    const d = t.duration;
    const duration_ms = d === undefined ? undefined : d.min_ms + Math.floor(u(2) * (d.max_ms - d.min_ms + 1));
    const steps = t.kind === 'sim' ? t.steps.min + Math.floor(u(2) * (t.steps.max - t.steps.min + 1)) : 0;
    const timeout_ms = t.timeout_ms ?? plan.timeout_ms ?? DEFAULT_TIMEOUT_BASE_MS + (t.kind === 'sim' ? steps : 3 * (duration_ms ?? 10_000));
    const dur = duration_ms === undefined ? {} : { duration: `${duration_ms}ms` };
    const common = { index, template: t.name, seed, buggify: [...o.buggify], timeout_ms };
    switch (t.kind) {
      case 'stress-revoke':
        return {
          ...common,
          kind: t.kind,
          flags: { guests: String(t.guests), vcpus: String(t.vcpus), 'backend-vcpus': String(t.backend_vcpus), pages: String(t.pages), adversary: t.adversary, ...dur, ...(t.full_mix ? { 'full-mix': true } : {}) },
        };
      // Real-thread jobs of a topology run a swarm subset unless the template asks for the full mix (docs/verification.md §2).
      case 'up':
        return { ...common, kind: t.kind, file: t.topology, flags: { ...dur, ...(t.transport !== undefined ? { transport: t.transport } : {}), ...(t.full_mix ? {} : { swarm: true }) } };
      case 'chaos':
        return { ...common, kind: t.kind, file: t.plan, flags: { ...dur, ...(t.transport !== undefined ? { transport: t.transport } : {}), ...(t.full_mix ? {} : { swarm: true }) } };
      case 'sim': {
        // mixed: the job draws and names its strategy (see the top of this file).
        const strategy = t.strategy === 'mixed' ? (u(3) < 0.5 ? 'random' : 'pct') : t.strategy;
        return { ...common, kind: t.kind, ...(t.topology !== undefined ? { file: t.topology } : {}), flags: { steps: String(steps), strategy, ...(t.chaos ? {} : { chaos: false }), ...(t.liveness ? {} : { liveness: false }), ...(t.full_mix ? { 'full-mix': true } : {}) } };
      }
    }
  });
}

/**
 * The flags `xgsim up`, `stress revoke` and `chaos` share: spelt once
 * (commander options, with the help text all three agree on unless a
 * command says its own), typed once, parsed once. A replayed record and a
 * campaign job go through the same parsers (runs/store.ts), so a bad value fails
 * alike everywhere: one line, exit 2.
 */
import { bugNames, type BugName, type BugSet } from '../../hypervisor/xen/buggify.js';
import { parseDuration } from '../config/units.js';
import { checkPcpus, type PcpuChoice } from '../config/fields.js';
import { MAX_PCPUS } from '../config/limits.js';
import { hostPcpus } from '../../hypervisor/host/spec.js';
import { UsageError } from '../errors.js';
import { prepareOutputs, type OutputFlags, type Outputs } from './outputs.js';

/** What every run command takes besides its own flags (`--trace`, `--report` from OutputFlags). */
export interface RunFlags extends OutputFlags {
  duration?: string;
  seed?: string;
  json?: boolean;
  /** XGSIM_BUGGIFY bits. */
  buggify: BugSet;
  /** Print the start line, progress, summary and replay lines (default true); campaign hosts and replay run quietly. */
  print?: boolean;
  /** `--save <file>`: save the run record there too, pass or fail. */
  save?: string;
  /** `--no-store`: keep nothing in the run store (runs/run-store.ts); printing runs are kept by default. */
  store?: boolean;
  /** `--pcpus n|auto|os`: how the vCPUs are scheduled (default: the topology's, else auto). */
  pcpus?: string;
}

/** What the runs of a topology (`up`, `chaos`) take besides: where the IOREQs go, how often the checker runs. */
export interface TopologyRunFlags extends RunFlags {
  transport?: string;
  redisUrl?: string;
  checkInterval?: string;
  /** `--transport-timeout`: how long Redis may answer nothing before the run ends as `unknown: transport down`. */
  transportTimeout?: string;
  /** `--redis-acl`: an ACL user per role on the Redis named (orchestrator/redis-url.ts redisAclOf). */
  redisAcl?: boolean;
  /** `--swarm`: each domain runs a subset of its behaviours and attacks drawn from the seed (campaign jobs' default). */
  swarm?: boolean;
}

/** The flags as commander hands them to a command's action: the rest comes from the environment or the caller. */
export type CliFlags<F extends RunFlags> = Omit<F, 'buggify' | 'print'>;

export { DEFAULT_CHECK_INTERVAL_MS, parseSeed, runFlag, TRANSPORTS, type RunFlagName } from './flag-defs.js';
import { DEFAULT_CHECK_INTERVAL_MS, parseSeed } from './flag-defs.js';

export function parseDurationFlag(flag: string, s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const r = parseDuration(s);
  if (!r.ok) throw new UsageError(`${flag}: ${r.error}`);
  if (r.value <= 0) throw new UsageError(`${flag}: must be positive, got \`${s}\``);
  return r.value;
}

/** `--<flag> <n>` as an integer lo…hi; undefined if not given. */
export function parseIntFlag(flag: string, s: string | undefined, lo: number, hi: number): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s) || Number(s) < lo || Number(s) > hi) throw new UsageError(`${flag}: expected an integer ${lo}…${hi}, got \`${s}\``);
  return Number(s);
}

/** `--pcpus`: auto, os or 1…MAX_PCPUS; undefined if not given. */
export function parsePcpusFlag(s: string | undefined): PcpuChoice | undefined {
  if (s === undefined) return undefined;
  const r = checkPcpus(s, MAX_PCPUS);
  if (!r.ok) throw new UsageError(`--pcpus: ${r.error}`);
  return r.value;
}

/** The host's pCPUs for a choice: auto is one per core of this machine, os is 0 (no pCPU scheduler). */
export function pcpusOf(c: PcpuChoice): number {
  return c === 'os' ? 0 : c === 'auto' ? hostPcpus() : c;
}

/** pCPUs as `--pcpus` spells them (a record, a replay line): os for 0. */
export function pcpusFlag(n: number): string {
  return n === 0 ? 'os' : String(n);
}

/** How a run's vCPUs are scheduled, for its start line. */
export function describePcpus(n: number): string {
  return n === 0 ? 'OS-scheduled vCPU threads (no pCPUs)' : `${n} pCPU${n === 1 ? '' : 's'}`;
}

export interface ParsedRunFlags {
  print: boolean;
  duration_ms: number;
  check_interval_ms: number;
  seed: number;
  outputs: Outputs;
  bugs: BugName[];
}

/**
 * The shared flags of a run, checked in the order every command reports
 * them: --duration, --check-interval, --seed, then the output paths (which
 * are probed, so they come last). `dflt` holds what the topology or plan
 * says when the flag is absent; a seed nobody gave is drawn at random.
 */
export function parseRunFlags(o: RunFlags & { checkInterval?: string }, dflt: { duration_ms: number; seed?: number | undefined }): ParsedRunFlags {
  const duration_ms = parseDurationFlag('--duration', o.duration) ?? dflt.duration_ms;
  const check_interval_ms = parseDurationFlag('--check-interval', o.checkInterval) ?? DEFAULT_CHECK_INTERVAL_MS;
  const seed = parseSeed(o.seed) ?? dflt.seed ?? Math.floor(Math.random() * 2 ** 31);
  const outputs = prepareOutputs(o, o.print !== false && o.store !== false);
  return { print: o.print !== false, duration_ms, check_interval_ms, seed, outputs, bugs: bugNames(o.buggify) };
}

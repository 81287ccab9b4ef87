/**
 * The flags `xgsim up`, `stress revoke` and `chaos` share: spelt once
 * (commander options, with the help text all three agree on unless a
 * command says its own), typed once, parsed once. A replayed record and a
 * campaign job go through the same parsers (runs/store.ts), so a bad value fails
 * alike everywhere: one line, exit 2.
 */
import { Option } from 'commander';
import { bugNames, type BugName } from '../../hypervisor/xen/buggify.js';
import { parseDuration } from '../config/units.js';
import { UsageError } from '../errors.js';
import { prepareOutputs, type OutputFlags, type Outputs } from './outputs.js';
import { DEFAULT_TRANSPORT_TIMEOUT_MS } from '../../transport/constants.js';

/** What every run command takes besides its own flags (`--trace`, `--report` from OutputFlags). */
export interface RunFlags extends OutputFlags {
  duration?: string;
  seed?: string;
  json?: boolean;
  /** XGSIM_BUGGIFY bits. */
  buggify: number;
  /** Print the start line, progress, summary and replay lines (default true); campaign hosts and replay run quietly. */
  print?: boolean;
  /** `--save <file>`: save the run record there, pass or fail (failures are saved under xgsim-runs/ anyway when printing). */
  save?: string;
}

/** What the runs of a topology (`up`, `chaos`) take besides: where the IOREQs go, how often the checker runs. */
export interface TopologyRunFlags extends RunFlags {
  transport?: string;
  redisUrl?: string;
  checkInterval?: string;
  /** `--transport-timeout`: how long Redis may answer nothing before the run ends as `unknown: transport down`. */
  transportTimeout?: string;
}

/** The flags as commander hands them to a command's action: the rest comes from the environment or the caller. */
export type CliFlags<F extends RunFlags> = Omit<F, 'buggify' | 'print'>;

/** `--transport`: auto takes Redis if it answers, else the embedded ring (up.ts chooseTransport). */
export const TRANSPORTS = ['auto', 'redis', 'ring'] as const;
/** `--check-interval` when not given. */
export const DEFAULT_CHECK_INTERVAL_MS = 250;

interface FlagDecl {
  flags: string;
  help: string;
  choices?: readonly string[];
  default?: string;
}

const FLAGS = {
  duration: { flags: '-d, --duration <time>', help: 'how long to run' },
  seed: { flags: '--seed <n>', help: 'seed (default random; always printed)' },
  json: { flags: '--json', help: 'print the summary as JSON' },
  transport: { flags: '--transport <kind>', help: 'IOREQ transport: auto (Redis if it answers, else ring), redis, ring', choices: TRANSPORTS },
  redisUrl: { flags: '--redis-url <url>', help: 'Redis for the redis transport (default: REDIS_URL or redis://127.0.0.1:6379)' },
  transportTimeout: { flags: '--transport-timeout <time>', help: `how long Redis may answer nothing before the run ends as unknown: transport down (default ${DEFAULT_TRANSPORT_TIMEOUT_MS / 1000}s)` },
  checkInterval: { flags: '--check-interval <time>', help: 'period of the running invariant checker', default: `${DEFAULT_CHECK_INTERVAL_MS}ms` },
  trace: { flags: '--trace <file>', help: 'write the timeline as Chrome trace JSON (open it in ui.perfetto.dev)' },
  report: { flags: '--report <dir>', help: 'write <dir>/index.html (plots, summary; self-contained) and <dir>/summary.json' },
  save: { flags: '--save <file>', help: 'save the run record (for `xgsim replay`) here, pass or fail (failures go to xgsim-runs/ anyway)' },
} as const satisfies Record<string, FlagDecl>;

export type RunFlagName = keyof typeof FLAGS;

/** A shared run flag as a commander option, with the command's own help text if it has one. */
export function runFlag(name: RunFlagName, help?: string): Option {
  const d: FlagDecl = FLAGS[name];
  const o = new Option(d.flags, help ?? d.help);
  if (d.choices !== undefined) o.choices(d.choices);
  if (d.default !== undefined) o.default(d.default);
  return o;
}

export function parseSeed(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s) || Number(s) > 2 ** 31 - 1) throw new UsageError(`--seed: expected an integer 0…2147483647, got \`${s}\``);
  return Number(s);
}

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
  const outputs = prepareOutputs(o);
  return { print: o.print !== false, duration_ms, check_interval_ms, seed, outputs, bugs: bugNames(o.buggify) };
}

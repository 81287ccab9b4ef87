/**
 * The shared run flags as commander options, and the one parser the help
 * needs (--seed): kept apart from run-flags.ts's parsing, which reaches the
 * output writers, so that `xgsim --help` loads only commander and this.
 */
import { Option } from 'commander';
import { UsageError } from '../errors.js';
import { MAX_PCPUS } from '../config/limits.js';
import { DEFAULT_TRANSPORT_TIMEOUT_MS } from '../../transport/constants.js';

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
  redisAcl: { flags: '--redis-acl', help: 'create a Redis ACL user per role (dispatcher, each device model, admin) on the Redis named by --redis-url or REDIS_URL, deleted at the end (docs/security.md)' },
  transportTimeout: { flags: '--transport-timeout <time>', help: `how long Redis may answer nothing before the run ends as unknown: transport down (default ${DEFAULT_TRANSPORT_TIMEOUT_MS / 1000}s)` },
  checkInterval: { flags: '--check-interval <time>', help: 'period of the running invariant checker', default: `${DEFAULT_CHECK_INTERVAL_MS}ms` },
  trace: { flags: '--trace <file>', help: 'write the timeline as Chrome trace JSON (open it in ui.perfetto.dev)' },
  report: { flags: '--report <dir>', help: 'write <dir>/index.html (plots, summary; self-contained) and <dir>/summary.json' },
  save: { flags: '--save <file>', help: 'also save the run record (for `xgsim replay`) here, pass or fail' },
  pcpus: {
    flags: '--pcpus <n|auto|os>',
    help: `schedule the vCPUs on n pCPUs (1…${MAX_PCPUS}), Xen-style; auto: one per core (the default, unless the topology says); os: no pCPU scheduler, the OS schedules every vCPU thread`,
  },
  store: { flags: '--no-store', help: 'keep nothing in the run store (default: every run in xgsim-runs/<name>/<time>/ with its record, summary and report; `xgsim runs`)' },
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


/**
 * One run of a recorded kind (`up`, `stress-revoke`, `chaos`) from its
 * flags, seed and bugs, through the same functions as the command line:
 * what `xgsim replay` re-runs from a record and what an `xgsim host` runs
 * for a campaign job. Flags arrive as the CLI spells them and go through
 * the commands' own parsing, so a bad value is the same UsageError (exit 2,
 * or a job result 'error') as on the command line.
 */
import { chaos } from './chaos.js';
import { UsageError } from './errors.js';
import { buggifyPrefix, type RunKind } from './run-record.js';
import { stressRevoke } from './stress.js';
import { up, type RunOutcome } from './up.js';

export interface RunSpec {
  kind: RunKind;
  /** Topology (up) or chaos plan (chaos). */
  file?: string | undefined;
  flags: Readonly<Record<string, string | boolean>>;
  seed: number;
  /** XGSIM_BUGGIFY bits. */
  buggify: number;
}

export interface RunSpecOptions {
  /** Print as the command line does (default false: quiet). */
  print?: boolean;
  /** `--save <file>` of the command. */
  save?: string;
  json?: boolean;
  /** Redis for runs whose transport is redis (default REDIS_URL). */
  redisUrl?: string | undefined;
}

const KNOWN_FLAGS: Record<RunKind, readonly string[]> = {
  up: ['duration', 'transport', 'check-interval', 'checks'],
  'stress-revoke': ['guests', 'vcpus', 'backend-vcpus', 'pages', 'adversary', 'duration'],
  chaos: ['duration', 'transport'],
};

export async function runSpec(s: RunSpec, o: RunSpecOptions = {}): Promise<RunOutcome> {
  for (const [k, v] of Object.entries(s.flags)) {
    if (!KNOWN_FLAGS[s.kind].includes(k)) throw new UsageError(`${s.kind}: unknown flag \`${k}\` (known: ${KNOWN_FLAGS[s.kind].join(', ')})`);
    if (typeof v !== 'string' && !(k === 'checks' && typeof v === 'boolean')) throw new UsageError(`${s.kind}: flag \`${k}\` has a ${typeof v} value`);
  }
  const flag = (k: string): string | undefined => {
    const v = s.flags[k];
    return typeof v === 'string' ? v : undefined;
  };
  const common = {
    seed: String(s.seed),
    buggify: s.buggify,
    print: o.print === true,
    ...(o.save !== undefined ? { save: o.save } : {}),
    ...(o.json !== undefined ? { json: o.json } : {}),
  };
  const opt = <K extends string>(name: K, v: string | undefined): Partial<Record<K, string>> => (v === undefined ? {} : ({ [name]: v } as Record<K, string>));
  switch (s.kind) {
    case 'up': {
      if (s.file === undefined) throw new UsageError('up: the run names no topology file');
      return up(s.file, {
        ...common,
        ...opt('duration', flag('duration')),
        ...opt('transport', flag('transport')),
        ...opt('checkInterval', flag('check-interval')),
        ...opt('redisUrl', o.redisUrl),
        ...(s.flags['checks'] === false ? { checks: false } : {}),
      });
    }
    case 'stress-revoke':
      return stressRevoke({
        ...common,
        ...opt('guests', flag('guests')),
        ...opt('vcpus', flag('vcpus')),
        ...opt('backendVcpus', flag('backend-vcpus')),
        ...opt('pages', flag('pages')),
        ...opt('adversary', flag('adversary')),
        ...opt('duration', flag('duration')),
      });
    case 'chaos': {
      if (s.file === undefined) throw new UsageError('chaos: the run names no chaos plan');
      return chaos(s.file, { ...common, ...opt('duration', flag('duration')), ...opt('transport', flag('transport')), ...opt('redisUrl', o.redisUrl) });
    }
  }
}

/** The command line that runs `s` directly (no record needed), e.g. for a job that never produced one. */
export function directCommand(s: Pick<RunSpec, 'kind' | 'file' | 'flags' | 'seed'>, bugs: readonly string[]): string {
  const cmd = s.kind === 'stress-revoke' ? 'stress revoke' : `${s.kind} ${s.file ?? ''}`;
  const flags = Object.entries(s.flags).map(([k, v]) => (v === false ? ` --no-${k}` : v === true ? ` --${k}` : ` --${k} ${v}`));
  return `${buggifyPrefix(bugs)}npx xgsim ${cmd}${flags.join('')} --seed ${s.seed}`;
}

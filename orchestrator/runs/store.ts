/**
 * One run of a recorded kind (`up`, `stress-revoke`, `chaos`, `sim`) from its
 * flags, seed and bugs, through the same functions as the command line:
 * what `xgsim replay` re-runs from a record and what an `xgsim host` runs
 * for a campaign job. Flags arrive as the CLI spells them and go through
 * the commands' own parsing, so a bad value is the same UsageError (exit 2,
 * or a job result 'error') as on the command line.
 */
import { bugNames, type BugSet } from '../../hypervisor/xen/buggify.js';
import { chaos } from '../up/chaos.js';
import { EXIT, UsageError } from '../errors.js';
import { buggifyPrefix, keepRecord, makeRecord, type RunFlags, type RunKind, type SimFacts } from './record.js';
import { firstReason, simOnce, type SimRun } from '../sim/sim.js';
import { histogramOf } from '../stats.js';
import { stressRevoke } from '../up/stress.js';
import { up, type RunOutcome } from '../up/up.js';

export interface RunSpec {
  kind: RunKind;
  /** Topology (up) or chaos plan (chaos). */
  file?: string | undefined;
  flags: Readonly<Record<string, string | boolean>>;
  seed: number;
  /** XGSIM_BUGGIFY bits. */
  buggify: BugSet;
}

export interface RunSpecOptions {
  /** Print as the command line does (default false: quiet). */
  print?: boolean;
  /** `--save <file>` of the command. */
  save?: string;
  json?: boolean;
  /** Redis for runs whose transport is redis (default REDIS_URL). */
  redisUrl?: string | undefined;
  /**
   * No Redis for the run (a campaign host of a `--redis-acl` campaign holds
   * only the campaign keys): `up` and `chaos` go over the ring transport,
   * and a job that asks for `redis` is refused.
   */
  ringOnly?: boolean;
  /**
   * Sim runs: called every 1 000 decisions, on the simulator's thread, in
   * the middle of the run (a campaign host's sim-job process reports its
   * step count here; a throw stops the run as a stuck one).
   */
  simProgress?: ((steps: number) => void) | undefined;
}

/** Most decisions of one sim run from a record or a job (as `xgsim sim --steps`). */
export const MAX_SIM_STEPS = 100_000_000;
const SIM_STRATEGIES = ['random', 'pct', 'mixed'] as const;

const KNOWN_FLAGS: Record<RunKind, readonly string[]> = {
  up: ['duration', 'transport', 'check-interval', 'checks', 'pcpus', 'transport-timeout', 'swarm'],
  'stress-revoke': ['guests', 'vcpus', 'backend-vcpus', 'pages', 'adversary', 'duration', 'pcpus', 'full-mix'],
  chaos: ['duration', 'transport', 'pcpus', 'transport-timeout', 'swarm'],
  sim: ['steps', 'strategy', 'chaos', 'liveness', 'full-mix', 'cost-model'],
};
/** Flags that may be booleans (`--no-checks`, `--no-chaos`); every other flag is a string. */
const BOOLEAN_FLAGS: readonly string[] = ['checks', 'chaos', 'liveness', 'full-mix', 'swarm'];

export async function runSpec(s: RunSpec, o: RunSpecOptions = {}): Promise<RunOutcome> {
  for (const [k, v] of Object.entries(s.flags)) {
    if (!KNOWN_FLAGS[s.kind].includes(k)) throw new UsageError(`${s.kind}: unknown flag \`${k}\` (known: ${KNOWN_FLAGS[s.kind].join(', ')})`);
    if (typeof v !== 'string' && !(BOOLEAN_FLAGS.includes(k) && typeof v === 'boolean')) throw new UsageError(`${s.kind}: flag \`${k}\` has a ${typeof v} value`);
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
  if (o.ringOnly === true && flag('transport') === 'redis') throw new UsageError(`${s.kind}: the job asks for the redis transport, and this host holds only the campaign keys (a campaign with --redis-acl runs its jobs over the ring)`);
  const transport = o.ringOnly === true ? 'ring' : flag('transport');
  switch (s.kind) {
    case 'up': {
      if (s.file === undefined) throw new UsageError('up: the run names no topology file');
      return up(s.file, {
        ...common,
        ...opt('duration', flag('duration')),
        ...opt('transport', transport),
        ...opt('checkInterval', flag('check-interval')),
        ...opt('pcpus', flag('pcpus')),
        ...opt('transportTimeout', flag('transport-timeout')),
        ...opt('redisUrl', o.redisUrl),
        ...(s.flags['checks'] === false ? { checks: false } : {}),
        ...(s.flags['swarm'] === true ? { swarm: true } : {}),
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
        ...opt('pcpus', flag('pcpus')),
        ...(s.flags['full-mix'] === true ? { fullMix: true } : {}),
      });
    case 'chaos': {
      if (s.file === undefined) throw new UsageError('chaos: the run names no chaos plan');
      // No redisUrl: a plan with Redis nemeses runs on a redis-server of its own (chaos.ts), never on the campaign's Redis.
      return chaos(s.file, { ...common, ...opt('duration', flag('duration')), ...opt('transport', transport), ...opt('pcpus', flag('pcpus')), ...opt('transportTimeout', flag('transport-timeout')), ...(s.flags['swarm'] === true ? { swarm: true } : {}) });
    }
    case 'sim':
      return sim(s, flag('steps'), flag('strategy'), o);
  }
}

async function sim(s: RunSpec, stepsFlag: string | undefined, strategyFlag: string | undefined, o: RunSpecOptions): Promise<RunOutcome> {
  if (stepsFlag === undefined) throw new UsageError('sim: the run names no --steps');
  if (!/^\d+$/.test(stepsFlag) || Number(stepsFlag) < 1 || Number(stepsFlag) > MAX_SIM_STEPS) throw new UsageError(`--steps: expected an integer 1…${MAX_SIM_STEPS}, got \`${stepsFlag}\``);
  const strategy = strategyFlag ?? 'mixed';
  if (!(SIM_STRATEGIES as readonly string[]).includes(strategy)) throw new UsageError(`--strategy: expected random, pct or mixed, got \`${strategy}\``);
  const chaosOn = s.flags['chaos'] !== false;
  const liveness = s.flags['liveness'] !== false;
  const fullMix = s.flags['full-mix'] === true;
  const run = await simOnce({
    liveness,
    swarm: !fullMix,
    ...(s.file !== undefined ? { topology: s.file } : {}),
    seed: s.seed,
    steps: Number(stepsFlag),
    strategy: strategy as (typeof SIM_STRATEGIES)[number],
    chaos: chaosOn,
    buggify: s.buggify,
    ...(typeof s.flags['cost-model'] === 'string' ? { costModel: s.flags['cost-model'] } : {}),
    ...(o.simProgress !== undefined ? { progress: o.simProgress } : {}),
  });
  return simOutcome(s, run, { steps: stepsFlag, strategy, ...(chaosOn ? {} : { chaos: false }), ...(liveness ? {} : { liveness: false }), ...(fullMix ? { 'full-mix': true } : {}), ...(typeof s.flags['cost-model'] === 'string' ? { 'cost-model': s.flags['cost-model'] } : {}) }, o);
}

/** A sim run as every other kind ends: a Summary, a record, an exit code — and the simulator's own facts beside them. */
function simOutcome(s: RunSpec, run: SimRun, flags: RunFlags['sim'], o: RunSpecOptions): RunOutcome {
  const reason = run.verdict === 'pass' ? '' : firstReason(run).split('\n')[0] ?? '';
  const violations = Object.values(run.summary.invariants).reduce((a, v) => a + v.violations, 0);
  // A failure the end-of-run report does not show (a workload's own check, an actor that threw) still says why.
  const errors = run.verdict === 'fail' && violations === 0 && run.summary.errors.length === 0 ? [reason] : run.summary.errors;
  const summary = { ...run.summary, errors, verdict: run.verdict === 'fail' ? ('fail' as const) : run.summary.verdict };
  const facts: SimFacts = { hash: run.hash, steps: run.steps, ...(run.failed_at_step !== null ? { failed_at_step: run.failed_at_step } : {}), reason };
  const record = makeRecord({ kind: 'sim', ...(s.file !== undefined ? { file: s.file } : {}), flags, seed: s.seed, buggify: bugNames(s.buggify), transport: 'sim', summary, replay: run.replay, sim: facts });
  keepRecord(record, { print: o.print === true, save: o.save });
  return {
    summary,
    exitCode: run.verdict === 'fail' ? EXIT.FAIL : EXIT.PASS,
    record,
    // Revoke latencies of a sim run are simulated time: not merged with real runs' (docs/campaigns.md).
    revoke_hist: histogramOf([]),
    sim: { ...facts, verdict: run.verdict, replay: run.replay },
  };
}

/** The command line that runs `s` directly (no record needed), e.g. for a job that never produced one. */
export function directCommand(s: Pick<RunSpec, 'kind' | 'file' | 'flags' | 'seed'>, bugs: readonly string[]): string {
  const cmd = s.kind === 'stress-revoke' ? 'stress revoke' : s.file !== undefined && s.file !== '' ? `${s.kind} ${s.file}` : s.kind;
  const flags = Object.entries(s.flags).map(([k, v]) => (v === false ? ` --no-${k}` : v === true ? ` --${k}` : ` --${k} ${v}`));
  return `${buggifyPrefix(bugs)}npx xgsim ${cmd}${flags.join('')} --seed ${s.seed}`;
}

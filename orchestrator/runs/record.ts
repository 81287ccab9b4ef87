/**
 * Run records: everything needed to run a run again — what ran (`up` of a
 * topology, `stress revoke`, `chaos` of a plan, `sim` of a topology), its flag values, seed,
 * BUGGIFY bugs and transport — with the verdict and Summary it produced
 * and the one-line direct replay command. `xgsim replay <record.json>`
 * (replay.ts) runs it again.
 *
 * Every failing `up` / `stress revoke` / `chaos` run saves its record
 * (default `xgsim-runs/` or XGSIM_RUNS_DIR, or `--save <file>`, which saves
 * passing runs too)
 * and prints `replay: npx xgsim replay <file>`. Quiet runs (`print: false`:
 * campaign hosts, replay itself) save nothing unless told where; their
 * caller gets the record.
 *
 * Flags are kept as the CLI spells them (`backend-vcpus`, `check-interval`)
 * with the values the run actually used (the effective duration, not the
 * topology's default), so a replay passes them through the same parsing
 * as the command line.
 */
import type { Verdict } from '../up/summary.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BUG_NAMES } from '../../hypervisor/xen/buggify.js';
import { InputError } from '../config/errors.js';
import { bool, describe, field, int, isRecord, list, obj, oneOf, str, tagged } from '../config/fields.js';
import { parseYaml, readInputFile, validate } from '../config/load.js';
import { MAX_SEED } from '../config/limits.js';
import type { Summary } from '../up/summary.js';

export const RUN_RECORD_VERSION = 1;
export const RUN_KINDS = ['up', 'stress-revoke', 'chaos', 'sim'] as const;
export type RunKind = (typeof RUN_KINDS)[number];
export const DEFAULT_RECORD_DIR = 'xgsim-runs';

/** Where records go by default: XGSIM_RUNS_DIR, else xgsim-runs/ (relative to the working directory). */
export function recordDir(): string {
  const d = process.env['XGSIM_RUNS_DIR'];
  return d !== undefined && d !== '' ? d : DEFAULT_RECORD_DIR;
}

/** The flags each kind of run records (CLI long names, without the dashes). */
export interface RunFlags {
  /**
   * `pcpus`: n or os, as the run resolved it. Absent (campaign jobs, and
   * records written before pCPUs were the default, which all ran
   * OS-scheduled): the command's default, one per core — so such an old
   * record replays on pCPUs, not as it ran.
   */
  /** `swarm`: each domain ran a subset of its behaviours and attacks drawn from the seed (orchestrator/up/swarm.ts). */
  up: { duration: string; transport: string; 'check-interval'?: string; checks?: boolean; pcpus?: string; swarm?: boolean };
  /** `full-mix`: with adversary mix, every mode (absent: the seed's swarm subset). */
  'stress-revoke': { guests: string; vcpus: string; 'backend-vcpus': string; pages: string; adversary: string; duration: string; pcpus?: string; 'full-mix'?: boolean };
  chaos: { duration: string; transport?: string; pcpus?: string; swarm?: boolean };
  /** As given: random, pct, or mixed (the seed picks, as `xgsim sim` does; campaign jobs always name one). */
  sim: { steps: string; strategy: string; chaos?: boolean; liveness?: boolean; 'full-mix'?: boolean; 'cost-model'?: string };
}

/** What a sim run adds to its record: the deterministic simulator's own facts, so a replay can say it was the same run. */
export interface SimFacts {
  /** The run's hash (hypervisor/host/sim/run.ts): equal hashes, the same run. */
  hash: string;
  /** Decisions taken. */
  steps: number;
  /** The decision after which the failure was seen; absent for a passing run. */
  failed_at_step?: number;
  /** The failure in one line (orchestrator/sim/sim.ts firstReason); '' for a passing run. */
  reason: string;
}

interface RecordBase {
  version: typeof RUN_RECORD_VERSION;
  seed: number;
  /** XGSIM_BUGGIFY names in force. */
  buggify: string[];
  /** The transport the run used (`ring`, `redis`). */
  transport: string;
  verdict: Verdict;
  summary: Summary;
  /** The direct replay command, e.g. `XGSIM_BUGGIFY=… npx xgsim stress revoke … --seed 7 --duration 300ms`. */
  replay: string;
  /** ISO 8601. */
  created_at: string;
}

export type RunRecord =
  | (RecordBase & { kind: 'up'; file: string; flags: RunFlags['up'] })
  | (RecordBase & { kind: 'stress-revoke'; flags: RunFlags['stress-revoke'] })
  | (RecordBase & { kind: 'chaos'; file: string; flags: RunFlags['chaos'] })
  | (RecordBase & { kind: 'sim'; file?: string; flags: RunFlags['sim']; sim: SimFacts });

type Dist<T> = T extends unknown ? Omit<T, 'version' | 'verdict' | 'created_at'> : never;
export type RecordInput = Dist<RunRecord>;

export function makeRecord(r: RecordInput): RunRecord {
  return { version: RUN_RECORD_VERSION, ...r, verdict: r.summary.verdict, created_at: new Date().toISOString() } as RunRecord;
}

/** `XGSIM_BUGGIFY=a,b ` or nothing: the environment prefix of a replay command. */
export function buggifyPrefix(bugs: readonly string[]): string {
  return bugs.length > 0 ? `XGSIM_BUGGIFY=${bugs.join(',')} ` : '';
}

/** `xgsim-runs/stress-revoke-seed-7-20261126-233401-123.json` */
export function defaultRecordPath(rec: RunRecord, dir: string = recordDir()): string {
  const stamp = rec.created_at.replace(/[-:]/g, '').replace('T', '-').replace('.', '-').replace('Z', '');
  return join(dir, `${rec.kind}-seed-${rec.seed}-${stamp}.json`);
}

/** Write a record as pretty JSON (directories created); returns the path. */
export function saveRecord(rec: RunRecord, file: string): string {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(rec, null, 2)}\n`);
  return file;
}

export interface KeepOptions {
  /** Print `replay: npx xgsim replay <file>` (and save failures by default). */
  print: boolean;
  /** `--save <file>`: save here, pass or fail. */
  save?: string | undefined;
}

/**
 * The end of every run that makes a record (`up`, `stress revoke`, `chaos`):
 * save it when it failed (into xgsim-runs/) or when `--save` says where, and
 * say how to replay it. A record that cannot be written is a warning, not a
 * failure of the run. Returns the path written, if any.
 */
export function keepRecord(rec: RunRecord, o: KeepOptions): string | undefined {
  if (o.save === undefined && (!o.print || rec.verdict !== 'fail')) return undefined;
  const file = o.save ?? defaultRecordPath(rec);
  try {
    saveRecord(rec, file);
  } catch (e) {
    if (o.print) process.stderr.write(`xgsim: could not save the run record to ${file}: ${e instanceof Error ? e.message : String(e)}\n`);
    return undefined;
  }
  if (o.print) process.stderr.write(`replay: npx xgsim replay ${file}\n`);
  return file;
}

// ---------------------------------------------------------------- loading

const version = field((v) => {
  if (v === RUN_RECORD_VERSION || v === BigInt(RUN_RECORD_VERSION)) return { ok: true, value: RUN_RECORD_VERSION };
  return { ok: false, error: `unsupported run record version ${describe(v)} (this xgsim reads version ${RUN_RECORD_VERSION})` };
});
const summary = field((v) => {
  if (!isRecord(v)) return { ok: false, error: `expected the run's summary (a mapping), got ${describe(v)}` };
  if (v['verdict'] !== 'pass' && v['verdict'] !== 'fail' && v['verdict'] !== 'interrupted' && v['verdict'] !== 'unknown') return { ok: false, error: 'the summary has no verdict (pass, fail, interrupted or unknown)' };
  return { ok: true, value: v };
});
/** A string, possibly empty. */
const anyText = field((v) => (typeof v === 'string' ? { ok: true, value: v } : { ok: false, error: `expected a string, got ${describe(v)}` }));
const base = {
  version,
  seed: int({ max: MAX_SEED }),
  buggify: list(oneOf(BUG_NAMES, 'bug')),
  transport: str(),
  verdict: oneOf(['pass', 'fail', 'interrupted', 'unknown'] as const, 'verdict'),
  summary,
  replay: str(),
  created_at: str(),
};
const kindOf = <const K extends string>(k: K) => oneOf([k] as const, 'kind');
const recordSchema = tagged(
  'kind',
  {
    up: obj({ ...base, kind: kindOf('up'), file: str(), flags: obj({ duration: str(), transport: str(), 'check-interval': str().optional(), checks: bool().optional(), pcpus: str().optional(), swarm: bool().optional() }) }),
    'stress-revoke': obj({
      ...base,
      kind: kindOf('stress-revoke'),
      flags: obj({ guests: str(), vcpus: str(), 'backend-vcpus': str(), pages: str(), adversary: str(), duration: str(), pcpus: str().optional(), 'full-mix': bool().optional() }),
    }),
    chaos: obj({ ...base, kind: kindOf('chaos'), file: str(), flags: obj({ duration: str(), transport: str().optional(), pcpus: str().optional(), swarm: bool().optional() }) }),
    sim: obj({
      ...base,
      kind: kindOf('sim'),
      file: str().optional(),
      flags: obj({ steps: str(), strategy: str(), chaos: bool().optional(), 'cost-model': str().optional() }),
      sim: obj({ hash: str(), steps: int(), failed_at_step: int().optional(), reason: anyText }),
    }),
  },
  'run kind',
);

/** 1-based line and column of a character offset. */
function lineCol(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, col: (lines.at(-1)?.length ?? 0) + 1 };
}

/** Parse and validate a record; malformed JSON and bad fields are InputErrors (file:line:col: key: message). */
export function parseRecord(text: string, file: string): RunRecord {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const m = /at position (\d+)/.exec(msg);
    const at = lineCol(text, m !== null ? Number(m[1]) : text.length);
    throw new InputError(`not a run record: malformed JSON: ${msg.replace(/ in JSON at position \d+.*$/, '')}`, { file, ...at });
  }
  if (!isRecord(json)) throw new InputError(`not a run record: expected a JSON object, got ${describe(json)}`, { file, line: 1, col: 1 });
  // JSON is YAML: the YAML parser gives every value its position for the messages.
  validate(parseYaml(text, file), recordSchema);
  return json as unknown as RunRecord;
}

export function loadRecord(file: string): RunRecord {
  return parseRecord(readInputFile(file, 'the run record'), file);
}

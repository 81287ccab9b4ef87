import { describe, expect, it } from 'vitest';
import { isInputError } from '../config/errors.js';
import { defaultRecordPath, makeRecord, parseRecord } from './record.js';
import { directCommand } from './store.js';
import type { Summary } from '../up/summary.js';

const summary = { seed: 7, verdict: 'fail', invariants: { no_use_after_revoke: { checks: 10, violations: 3 } } } as unknown as Summary;
const rec = makeRecord({
  kind: 'stress-revoke',
  flags: { guests: '1', vcpus: '1', 'backend-vcpus': '1', pages: '8', adversary: 'none', duration: '300ms' },
  seed: 7,
  buggify: ['skip-tlb-flush-on-revoke'],
  transport: 'ring',
  summary,
  replay: 'XGSIM_BUGGIFY=skip-tlb-flush-on-revoke npx xgsim stress revoke --seed 7',
});

function errorOf(text: string): string {
  try {
    parseRecord(text, 'r.json');
  } catch (e) {
    if (isInputError(e)) return e.toString();
    throw e;
  }
  return 'accepted';
}

describe('run records', () => {
  it('round-trip through JSON; the verdict is the summary\'s', () => {
    expect(rec.verdict).toBe('fail');
    expect(parseRecord(JSON.stringify(rec, null, 2), 'r.json')).toEqual(rec);
    expect(defaultRecordPath(rec, 'xgsim-runs')).toMatch(/^xgsim-runs\/stress-revoke-seed-7-\d{8}-\d{6}-\d{3}\.json$/);
  });

  it('malformed JSON and bad fields say file:line:col, key and why, on one line', () => {
    expect(errorOf('{\n  "version": 1,\n  oops\n}')).toBe('r.json:3:3: not a run record: malformed JSON: Expected double-quoted property name');
    expect(errorOf('')).toMatch(/^r\.json:1:1: not a run record: malformed JSON/);
    expect(errorOf('[1]')).toBe('r.json:1:1: not a run record: expected a JSON object, got a list');
    const text = JSON.stringify({ ...rec, seed: -1 }, null, 2);
    expect(errorOf(text)).toMatch(/^r\.json:\d+:\d+: seed: must be at least 0, got -1$/);
    expect(errorOf(JSON.stringify({ ...rec, buggify: ['no-scrubb'] }))).toContain('buggify[0]: unknown bug `no-scrubb`; did you mean `no-scrub`?');
    expect(errorOf(JSON.stringify({ ...rec, flags: { ...rec.flags, colour: 'red' } }))).toContain('flags.colour: unknown key `colour`');
    expect(errorOf(JSON.stringify({ ...rec, kind: 'up' }))).toContain('file: required key is missing');
  });

  it('sim records keep the run\'s hash and reason; file is optional (the default topology)', () => {
    const facts = { hash: '0badf00d', steps: 300, failed_at_step: 300, reason: 'no_use_after_revoke: …' };
    const sim = makeRecord({
      kind: 'sim',
      flags: { steps: '20000', strategy: 'pct', chaos: false },
      seed: 9,
      buggify: [],
      transport: 'sim',
      summary,
      replay: 'npx xgsim sim --seed 9 --steps 300 --horizon 20000 --strategy pct --no-chaos',
      sim: facts,
    });
    expect(parseRecord(JSON.stringify(sim, null, 2), 'r.json')).toEqual(sim);
    const pass = { ...sim, sim: { hash: '0badf00d', steps: 20000, reason: '' } };
    expect(parseRecord(JSON.stringify(pass), 'r.json')).toEqual(pass);
    expect(errorOf(JSON.stringify({ ...sim, sim: { ...facts, hash: undefined } }))).toContain('sim.hash: required key is missing');
    expect(errorOf(JSON.stringify({ ...sim, flags: { ...sim.flags, duration: '1s' } }))).toContain('flags.duration: unknown key `duration`');
  });

  it('direct commands spell the flags as the CLI does', () => {
    expect(directCommand({ kind: 'sim', flags: { steps: '500', strategy: 'random', chaos: false }, seed: 5 }, [])).toBe('npx xgsim sim --steps 500 --strategy random --no-chaos --seed 5');
    expect(directCommand({ kind: 'sim', file: 'examples/two-guests.yaml', flags: { steps: '500', strategy: 'pct' }, seed: 5 }, [])).toBe('npx xgsim sim examples/two-guests.yaml --steps 500 --strategy pct --seed 5');
    expect(directCommand({ kind: 'up', file: 'a.yaml', flags: { duration: '1s', checks: false }, seed: 3 }, [])).toBe('npx xgsim up a.yaml --duration 1s --no-checks --seed 3');
    expect(directCommand({ kind: 'stress-revoke', flags: { guests: '2' }, seed: 4 }, ['no-scrub'])).toBe('XGSIM_BUGGIFY=no-scrub npx xgsim stress revoke --guests 2 --seed 4');
  });
});

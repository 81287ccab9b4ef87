/**
 * `xgsim chaos` (issue 5): every nemesis acts against a running GPU
 * topology on both transports with no violation, every ioreq accounted for
 * (completed, or abandoned by a vCPU that stopped or died — never lost),
 * frames conserved, recovery measured; and the exactly-once ledger really
 * catches a device model that applies a duplicate.
 */
import { describe, expect, it } from 'vitest';
import { parseBuggify, NO_BUGS } from '../hypervisor/xen/buggify.js';
import { NEMESIS_KINDS } from '../hypervisor/host/chaos.js';
import { chaos } from '../orchestrator/up/chaos.js';
import { expandPlan, loadChaosPlan } from '../orchestrator/config/chaos-plan.js';
import { itIf, REDIS_URL, redisGate } from './redis-gate.js';
import { testSeed } from './harness.js';

const redisIt = itIf(await redisGate('tests/chaos.test.ts', 'the chaos-over-Redis test'));

const SMOKE = 'examples/chaos/smoke.yaml';
const REDIS_KINDS = new Set(['redis-kill', 'redis-pause']);

async function smoke(transport: 'ring' | 'redis', name: string, bugs = ''): Promise<Awaited<ReturnType<typeof chaos>>['summary']> {
  const seed = testSeed(name);
  // No redisUrl: a plan with Redis nemeses runs on a redis-server of its own (never pauses the shared one).
  const { summary } = await chaos(SMOKE, { transport, seed: String(seed), print: false, buggify: parseBuggify(bugs) });
  return summary;
}

const explain = (s: Awaited<ReturnType<typeof smoke>>): string =>
  JSON.stringify({ verdict: s.verdict, violations: s.violations.slice(0, 5), errors: s.errors, ioreq: s.ioreq, injections: s.faults_injected, events: s.events.slice(0, 10) });

describe('chaos', () => {
  for (const transport of ['ring', 'redis'] as const) {
    (transport === 'redis' ? redisIt : it)(`every nemesis over ${transport}: no violation, every ioreq accounted for, frames conserved, recovery measured`, async () => {
      const s = await smoke(transport, `chaos smoke ${transport}`);
      expect(s.verdict, explain(s)).toBe('pass');
      expect(s.errors).toEqual([]);
      expect(Object.values(s.invariants).reduce((a, v) => a + v.violations, 0), explain(s)).toBe(0);
      expect(s.ioreq.unaccounted, explain(s)).toBe(0);
      expect(s.ioreq.sent).toBeGreaterThan(0);
      expect(s.invariants['ioreq_forward']?.checks ?? 0).toBeGreaterThan(0);
      expect(s.frames.conserved).toBe(true);
      expect(s.frames.free).toBe(s.frames.total);
      for (const k of NEMESIS_KINDS) {
        const acted = s.faults_injected.filter((f) => f.kind === k && f.skipped === undefined);
        if (transport === 'ring' && REDIS_KINDS.has(k)) {
          expect(s.faults_injected.find((f) => f.kind === k)?.skipped, k).toMatch(/ring/);
          continue;
        }
        expect(acted.length, `${k}: ${explain(s)}`).toBeGreaterThan(0);
      }
      if (transport === 'redis') {
        // …on a Redis started for the run, not the one REDIS_URL names (the tests' shared server is never paused).
        expect(s.chaos.redis_nemeses.own).toBe(true);
        // Its default user has a password, shown as ***.
        expect(s.chaos.redis_nemeses.on).toMatch(/^redis:\/\/:\*\*\*@127\.0\.0\.1:\d+$/);
        expect(s.chaos.redis_nemeses.on).not.toBe(REDIS_URL);
      }
      // What the nemeses did is visible in the counts.
      expect(s.ioreq.nemesis.duplicated, explain(s)).toBeGreaterThan(0);
      expect(s.ioreq.nemesis.delayed, explain(s)).toBeGreaterThan(0);
      expect(s.ioreq.duplicates_dropped, explain(s)).toBeGreaterThan(0);
      expect(s.domains.find((d) => d.name === 'victim1')?.state).toBe('free');
      expect(s.domains.find((d) => d.name === 'victim2')?.state).toBe('free');
      // Every injection that acted has a recovery time (the run goes on ≥ 1.8 s after the last).
      for (const f of s.faults_injected.filter((x) => x.skipped === undefined)) expect(f.recovery_ms, `${f.kind}: ${explain(s)}`).toBeGreaterThanOrEqual(0);
    });
  }

  redisIt('with a Redis the user names, the Redis nemeses are refused (a pause would stop everyone\'s clients)', async () => {
    const seed = testSeed('chaos named redis');
    const { summary: s } = await chaos(SMOKE, { transport: 'redis', seed: String(seed), duration: '4500ms', print: false, buggify: NO_BUGS, redisUrl: REDIS_URL });
    expect(s.verdict, explain(s)).toBe('pass');
    expect(s.chaos.redis_nemeses).toMatchObject({ own: false, refused: expect.stringMatching(/which xgsim did not start \(--allow-server-nemeses lets it\)/) as unknown });
    const redis = s.faults_injected.filter((f) => REDIS_KINDS.has(f.kind));
    expect(redis.map((f) => f.kind).sort()).toEqual(['redis-kill', 'redis-pause']);
    for (const f of redis) expect(f.skipped, f.kind).toMatch(/did not start/);
  });

  it('the exactly-once ledger catches a device model that applies a duplicate delivery (BUGGIFY ioreq-no-dedup)', async () => {
    const s = await smoke('ring', 'chaos ioreq-no-dedup', 'ioreq-no-dedup');
    expect(s.verdict).toBe('fail');
    expect(s.invariants['ioreq_forward']?.violations ?? 0, explain(s)).toBeGreaterThan(0);
    expect(s.violations.some((v) => /applied after/.test(v.text))).toBe(true);
  });

  it('a plan expands to the same injections for the same seed, and to others for another', () => {
    const plan = loadChaosPlan('examples/chaos/everything.yaml');
    const a = expandPlan(plan, 7, 60_000);
    expect(expandPlan(plan, 7, 60_000)).toEqual(a);
    expect(expandPlan(plan, 8, 60_000)).not.toEqual(a);
    // The schedule is kept as written; random ones come on top, in order.
    expect(a.filter((x) => x.source === 'schedule').length).toBe(plan.schedule.length);
    expect(a.filter((x) => x.source === 'random').length).toBeGreaterThan(0);
    for (let i = 1; i < a.length; i++) expect(a[i]!.at_ms).toBeGreaterThanOrEqual(a[i - 1]!.at_ms);
    // everything.yaml schedules every kind at least once.
    for (const k of NEMESIS_KINDS) expect(plan.schedule.some((x) => x.kind === k), k).toBe(true);
  });
});

/**
 * The fault suite (issue 16): `xgsim up` over the `redis` transport against
 * a redis-server this file starts on a free port and stops by its pid —
 * never the shared Redis — while the test breaks that server or writes to
 * it what nobody should: a consumer group destroyed, the server restarted,
 * flushed, out of memory, a key of the wrong type, entries deleted, a
 * stream at its last possible ID, a corrupt answer record, forged requests
 * and answers, the server down for longer than the transport timeout, and
 * SIGTERM (with Redis up, and with it down); and, with an ACL user per
 * role (--redis-acl), a run that passes, a role whose user is refused
 * mid-run (NOPERM) and a restart that loses the users.
 *
 * Each asserts the outcome, never the speed: the summary is printed; the
 * verdict is honest (`pass` when the run recovered everything, `unknown`
 * when it could not see everything, never `fail`: no fault here is the
 * hypervisor's); no violation is reported; no raw stack; no key of the run
 * is left; and the process ended (a generous bound kills a hung one, and
 * the test then fails as hung).
 */
import { appendFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { answersAfter, HAVE_REDIS_SERVER, OwnRedis, redisNow, runKeys, sleep, startRun, type Outcome } from './harness.js';
import { testSeed } from '../harness.js';
import { decodeReq, encode, isWireError } from '../../transport/messages.js';
import { EXIT } from '../../orchestrator/errors.js';

const CI = process.env['CI'] !== undefined && !['', '0', 'false'].includes(process.env['CI']);
if (!HAVE_REDIS_SERVER) console.warn(`\n!!! redis-server is not installed: the fault suite is SKIPPED${CI ? ' — and CI is set, so it FAILS' : ''} !!!\n`);

/** Most runs: long enough to see the fault and the recovery. Runs a fault ends: long, so the end is the fault's doing. */
const SHORT = '3s';
const LONG = '60s';
/** The bound past which a run counts as hung (not an assertion on speed: a run that recovers ends far sooner). */
const HANG_MS = 90_000;

let redis: OwnRedis;
let admin: Redis;

beforeAll(async () => {
  if (!HAVE_REDIS_SERVER) return;
  redis = await OwnRedis.start();
  admin = redis.client();
});

afterAll(async () => {
  admin?.disconnect();
  await redis?.down();
});

beforeEach(async () => {
  if (!HAVE_REDIS_SERVER) return;
  // Each test starts from a server that is up, empty and unlimited (ours: flushing it is fine).
  if (!(await admin.ping().then(() => true, () => false))) await redis.up();
  await admin.config('SET', 'maxmemory', '0');
  await admin.flushall();
});

/** XGSIM_FAULTS_LOG=<file>: one JSON line per run (the suite's figures: verdicts, violations, keys left, hangs). */
function logOutcome(out: Outcome, hung: boolean, keysLeft: number): void {
  const file = process.env['XGSIM_FAULTS_LOG'];
  if (file === undefined || file === '') return;
  const s = out.summary;
  const line = { test: expect.getState().currentTestName ?? '', code: out.code, hung, summary: s !== undefined, verdict: s?.verdict, violations: s === undefined ? null : Object.values(s.invariants).reduce((a, v) => a + v.violations, 0), errors: s?.errors.length, rejected: s?.ioreq.rejected, resent: s?.ioreq.resent, keys_left: keysLeft, unknown: s?.unknown };
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}

/** The checks every fault shares (see the file comment). */
async function expectHonest(out: Outcome, hung: boolean, want: { verdict: 'pass' | 'unknown' | 'interrupted'; unknown?: RegExp }): Promise<void> {
  if (!(await admin.ping().then(() => true, () => false))) await redis.up();
  logOutcome(out, hung, (await runKeys(admin)).length);
  const tail = `\nstdout:\n${out.stdout.slice(-3000)}\nstderr:\n${out.stderr.slice(-3000)}`;
  expect(hung, `the run hung${tail}`).toBe(false);
  expect(out.summary, `no summary printed${tail}`).toBeDefined();
  const s = out.summary!;
  expect(s.verdict, tail).toBe(want.verdict);
  expect(out.code, tail).toBe(want.verdict === 'pass' ? EXIT.PASS : want.verdict === 'unknown' ? EXIT.UNKNOWN : EXIT.INTERRUPTED);
  expect(s.errors, tail).toEqual([]);
  expect(Object.values(s.invariants).reduce((a, v) => a + v.violations, 0), `false violations${tail}`).toBe(0);
  expect(s.violations, tail).toEqual([]);
  expect(s.ops['workload_check_fails'] ?? 0, tail).toBe(0);
  expect(s.ioreq.unaccounted, tail).toBe(0);
  expect(out.stderr, 'a raw stack trace').not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
  if (want.unknown !== undefined) expect(s.unknown.join('\n'), tail).toMatch(want.unknown);
  // No key of the run is left (the server may have been down: the test's own, brought back empty above).
  expect(await runKeys(admin)).toEqual([]);
}

/** The ACL users the runs made on our server (`xgsim-<tag>-<role>`). */
async function aclUsers(): Promise<string[]> {
  return ((await admin.call('ACL', 'USERS')) as string[]).filter((u) => u.startsWith('xgsim-'));
}

/** Start a run and wait until it answers ioreqs; returns the run and its namespace. */
async function running(name: string, duration: string, extra: string[] = []): Promise<{ run: ReturnType<typeof startRun>; ns: string }> {
  const run = startRun(redis, { duration, seed: testSeed(`fault suite: ${name}`), extra, hang_ms: HANG_MS });
  const ns = await run.namespace();
  expect(await answersAfter(redis, ns, 0), 'the run answered no ioreq before the fault').toBe(true);
  return { run, ns };
}

/** Keys of the run matching `kind` (req, resp). */
function streams(ns: string, kind: 'req' | 'resp'): Promise<string[]> {
  return runKeys(admin, `${ns}:${kind}:*`);
}

describe.skipIf(!HAVE_REDIS_SERVER && !CI)('the host under Redis faults (its own redis-server)', () => {
  it('redis-server is installed (required under CI)', () => {
    expect(HAVE_REDIS_SERVER).toBe(true);
  });

  it('consumer groups destroyed mid-run: created again on every path; the run goes on and passes', async () => {
    const { run, ns } = await running('group destroyed', SHORT);
    for (let k = 0; k < 3; k++) {
      for (const key of await streams(ns, 'req')) await admin.call('XGROUP', 'DESTROY', key, 'dm').catch(() => 0);
      await sleep(200);
    }
    const t = await redisNow(admin);
    expect(await answersAfter(redis, ns, t), 'no answer after the groups were destroyed').toBe(true);
    await expectHonest(await run.done, run.hung(), { verdict: 'pass' });
  });

  it('the server restarted mid-run (no persistence: every key lost): the run resumes, and says unknown', async () => {
    const { run, ns } = await running('server restarted', SHORT);
    await redis.down();
    await sleep(300);
    await redis.up();
    const t = await redisNow(admin);
    expect(await answersAfter(redis, ns, t), 'no answer after the restart').toBe(true);
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'unknown', unknown: /lost the run's keys/ });
  });

  it('FLUSHALL mid-run: the run resumes (everything in flight sent again), and says unknown, not pass', async () => {
    const { run, ns } = await running('flushall', SHORT);
    await admin.flushall();
    const t = await redisNow(admin);
    expect(await answersAfter(redis, ns, t), 'no answer after the flush').toBe(true);
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'unknown', unknown: /lost the run's keys/ });
  });

  it('maxmemory reached (OOM on XADD and EVAL): the run ends cleanly as unknown, with the reason', async () => {
    const { run } = await running('oom', LONG);
    await admin.config('SET', 'maxmemory', '1');
    const out = await run.done;
    await admin.config('SET', 'maxmemory', '0');
    await expectHonest(out, run.hung(), { verdict: 'unknown', unknown: /OOM/ });
  });

  it('a key of the wrong type where a response stream was: the run ends cleanly as unknown, with the reason', async () => {
    const { run, ns } = await running('wrong type', LONG);
    for (const key of await streams(ns, 'resp')) {
      await admin.del(key);
      await admin.set(key, 'not a stream');
    }
    await expectHonest(await run.done, run.hung(), { verdict: 'unknown', unknown: /WRONGTYPE/ });
  });

  it('request and response entries deleted (XTRIM, XDEL) mid-run: sent again, nothing hangs, no false violation; pass', async () => {
    // Long enough that answers can still come after 1.5 s of deletions on a loaded machine (the run's clock starts before its first answer): 3 s are left.
    const { run, ns } = await running('entries deleted', '5s');
    const stop = Date.now() + 1500;
    while (Date.now() < stop) {
      for (const key of [...(await streams(ns, 'req')), ...(await streams(ns, 'resp'))]) await admin.xtrim(key, 'MAXLEN', 0);
      await sleep(10);
    }
    const t = await redisNow(admin);
    expect(await answersAfter(redis, ns, t), 'no answer after the deletions').toBe(true);
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'pass' });
    expect(out.summary!.ioreq.resent, 'nothing was lost and sent again: the fault missed').toBeGreaterThan(0);
  });

  it('a stream at its last possible ID: the run ends cleanly as unknown, with the reason', async () => {
    const { run, ns } = await running('stream exhausted', LONG);
    for (const key of await streams(ns, 'resp')) await admin.xadd(key, '18446744073709551615-18446744073709551615', 'm', 'x');
    await expectHonest(await run.done, run.hung(), { verdict: 'unknown', unknown: /exhausted/ });
  });

  it('answer records that do not parse: the run ends cleanly as unknown, with the reason', async () => {
    const { run, ns } = await running('corrupt record', LONG);
    // The next ioreqs of every vCPU that has sent one: their records, written before the device model's.
    // Per server (each has its own record, `${ns}:applied:<server>`), per vCPU.
    const latest = new Map<string, { server: number; vcpu: string; seq: number }>();
    for (const key of await streams(ns, 'req')) {
      for (const [, fields] of (await admin.xrevrangeBuffer(key, '+', '-', 'COUNT', 50)) as Array<[Buffer, Buffer[]]>) {
        const m = fields[1] !== undefined ? decodeReq(fields[1]) : undefined;
        if (m === undefined || isWireError(m) || m.buf === 1) continue;
        const k = `${m.server}|${m.domid}:${m.vcpu}`;
        latest.set(k, { server: m.server, vcpu: `${m.domid}:${m.vcpu}`, seq: Math.max(m.seq, latest.get(k)?.seq ?? 0) });
      }
    }
    expect(latest.size).toBeGreaterThan(0);
    for (const { server, vcpu, seq } of latest.values()) {
      const fields = Array.from({ length: 2000 }, (_, k) => [`${vcpu}:${seq + k}`, 'not an answer']).flat();
      await admin.hset(`${ns}:applied:${server}`, ...fields);
    }
    await expectHonest(await run.done, run.hung(), { verdict: 'unknown', unknown: /does not parse/ });
  });

  it('forged requests (another domain, a future seq, garbage, a genuine entry replayed): rejected or deduplicated, never executed; pass', async () => {
    const { run, ns } = await running('forged requests', SHORT);
    let forged = 0;
    for (const key of await streams(ns, 'req')) {
      const last = (await admin.xrevrangeBuffer(key, '+', '-', 'COUNT', 20)) as Array<[Buffer, Buffer[]]>;
      for (const [, fields] of last) {
        const m = fields[1] !== undefined ? decodeReq(fields[1]) : undefined;
        if (m === undefined || isWireError(m)) continue;
        // A genuine entry replayed as it was (its MAC with it): a duplicate.
        await admin.xadd(key, '*', ...fields);
        for (const f of [{ ...m, domid: (m.domid + 1) % 3 }, { ...m, seq: m.seq + 5 }, { ...m, data: (m.data + 1) >>> 0 }]) {
          await admin.xadd(key, '*', 'm', encode(f));
          forged++;
        }
      }
      await admin.xadd(key, '*', 'm', Buffer.from([0xc1, 0x00]));
      forged++;
    }
    expect(forged).toBeGreaterThan(0);
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'pass' });
    expect(out.summary!.ioreq.rejected).toBeGreaterThanOrEqual(forged);
  });

  it('forged answers (the right seq, from a stranger; a genuine answer replayed): rejected or deduplicated, no false violation, no wrong data; pass', async () => {
    const { run, ns } = await running('forged answers', SHORT);
    let forged = 0;
    const end = Date.now() + 1000;
    while (Date.now() < end) {
      for (const key of await streams(ns, 'req')) {
        for (const [, fields] of (await admin.xrevrangeBuffer(key, '+', '-', 'COUNT', 5)) as Array<[Buffer, Buffer[]]>) {
          const m = fields[1] !== undefined ? decodeReq(fields[1]) : undefined;
          if (m === undefined || isWireError(m) || m.buf === 1) continue;
          // The answer the vCPU waits for, with wrong data: it would fail the guest's own content checks.
          await admin.xadd(`${ns}:resp:${m.domid}`, '*', 'm', encode({ host: 'evil', domid: m.domid, vcpu: m.vcpu, seq: m.seq, data: 0xdead_beef, state: 3, error: 0, buf: 0 }));
          forged++;
        }
      }
      for (const key of await streams(ns, 'resp')) {
        const [genuine] = (await admin.xrevrangeBuffer(key, '+', '-', 'COUNT', 1)) as Array<[Buffer, Buffer[]]>;
        if (genuine !== undefined) await admin.xadd(key, '*', ...genuine[1]);
      }
      await sleep(20);
    }
    expect(forged).toBeGreaterThan(0);
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'pass' });
    expect(out.summary!.ioreq.rejected).toBeGreaterThanOrEqual(forged);
    expect(out.summary!.ioreq.guests_crashed).toBe(0);
  });

  it('Redis down for longer than --transport-timeout: the run ends as unknown: transport down, with its summary', async () => {
    const { run } = await running('redis down', LONG, ['--transport-timeout', '2s']);
    await redis.down();
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'unknown', unknown: /transport down/ });
  });

  // ── Redis ACL users per role (--redis-acl; docs/security.md) ──

  it('a run with an ACL user per role (--redis-acl): passes; no key and no user left', async () => {
    const { run } = await running('acl', SHORT, ['--redis-acl']);
    expect((await aclUsers()).length, 'the run made no ACL users').toBeGreaterThanOrEqual(3);
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'pass' });
    expect(out.stdout + out.stderr).not.toMatch(/ready check/);
    // No password of a role (64 hex digits) in anything the run printed.
    expect(out.stdout + out.stderr).not.toMatch(/[0-9a-f]{64}/);
    expect(await aclUsers()).toEqual([]);
  });

  for (const role of ['dm-d0', 'dispatcher'] as const) {
    it(`NOPERM mid-run (the ${role} user loses its keys): a transport fault, unknown, never a violation; no key and no user left`, async () => {
      const { run } = await running(`acl noperm ${role}`, LONG, ['--redis-acl']);
      const user = (await aclUsers()).find((u) => u.endsWith(`-${role}`));
      expect(user, `no ${role} user among ${(await aclUsers()).join(', ')}`).toBeDefined();
      // Its connections stay authenticated; each next command it sends is refused.
      await admin.call('ACL', 'SETUSER', user!, 'resetkeys');
      const out = await run.done;
      await expectHonest(out, run.hung(), { verdict: 'unknown', unknown: /NOPERM|can't access/ });
      expect(out.summary!.ioreq.guests_crashed).toBe(0);
      expect(await aclUsers()).toEqual([]);
    });
  }

  it('the server restarted under --redis-acl (its ACL users lost with it): the run ends as unknown, with its summary; no key, no user left', async () => {
    const { run } = await running('acl restart', LONG, ['--redis-acl', '--transport-timeout', '2s']);
    await redis.down();
    await sleep(300);
    await redis.up();
    const out = await run.done;
    await expectHonest(out, run.hung(), { verdict: 'unknown' });
    expect(await aclUsers()).toEqual([]);
  });

  it('SIGTERM mid-run: stops, prints the summary (interrupted), deletes the keys', async () => {
    const { run } = await running('sigterm', LONG);
    process.kill(run.child.pid!, 'SIGTERM');
    await expectHonest(await run.done, run.hung(), { verdict: 'interrupted' });
  });

  it('SIGTERM with Redis down: still ends, with its summary, without waiting for Redis', async () => {
    const { run } = await running('sigterm redis down', LONG, ['--transport-timeout', '60s']);
    await redis.down();
    await sleep(300);
    process.kill(run.child.pid!, 'SIGTERM');
    const out = await run.done;
    // The keys could not be deleted (Redis was down): the summary says so; the server comes back empty.
    expect(out.summary?.events.join('\n') ?? '').toMatch(/could not be deleted/);
    await expectHonest(out, run.hung(), { verdict: 'interrupted' });
  });
});

/**
 * Redis ACL users per role (transport/redis-acl.ts), on a redis-server this
 * file starts itself (tests/own-redis.ts: a free port, a random password on
 * its default user, stopped by pid) — ACL SETUSER is never sent to the
 * shared Redis at REDIS_URL.
 *
 * With each role's own credentials, as its connections would hold them:
 * the whole IOREQ protocol goes through (the dispatcher publishes and reads
 * answers, the device model reads, answers once, records, acknowledges,
 * reclaims, the admin deletes the keys), and what each role may not do is
 * refused with NOPERM — a device model cannot write another server's
 * stream, answer another frontend, touch another server's records, read
 * the campaign keys, delete keys or configure Redis.
 */
import { Redis } from 'ioredis';
import { describe, expect, it as pure, vi } from 'vitest';
import { IOREQ_STATE, IOREQ_TYPE } from '../hypervisor/public/ioreq.js';
import type { IoreqMsg, IoreqResp } from './messages.js';
import { RedisIoreqBus, START_ID } from './redis-bus.js';
import { newRunKey, serverKey } from './auth.js';
import { aclRules, RunAcl, urlAs, withoutUser, type AclRole } from './redis-acl.js';
import { ownRedisIt } from '../tests/own-redis.js';
import { testSeed } from '../tests/harness.js';

const own = ownRedisIt('transport/redis-acl.test.ts', 'the Redis ACL tests');
const it = own.it;

/** Frontend d1 (server 8) and d3 (server 24), each served by its own device model. */
const ROLES: Record<string, AclRole> = {
  dispatcher: { kind: 'dispatcher' },
  admin: { kind: 'admin' },
  'dm-d0': { kind: 'device-model', servers: [8], frontends: [1] },
  'dm-d2': { kind: 'device-model', servers: [24], frontends: [3] },
  campaign: { kind: 'campaign', pool: 'default' },
};

function req(seq: number, domid = 1, server = 8): IoreqMsg {
  return { host: 'test', domid, vcpu: 0, seq, server, type: IOREQ_TYPE.COPY, dir: 1, addr: 0xfe00_0000 + 4 * seq, size: 4, data: 0, count: 1, df: 0, data_is_ptr: 0, state: IOREQ_STATE.READY, buf: 0, after: 0 };
}
function resp(m: IoreqMsg, data: number): IoreqResp {
  return { host: 'test', domid: m.domid, vcpu: m.vcpu, seq: m.seq, data, state: IOREQ_STATE.IORESP_READY, error: 0, buf: 0 };
}

/** A plain connection as `role`'s user (what a compromised holder of its credentials could send). */
function as(acl: RunAcl, role: string): Redis {
  const c = new Redis(acl.url(role), { maxRetriesPerRequest: 1, enableReadyCheck: false, lazyConnect: true });
  c.on('error', () => undefined);
  return c;
}

/** The reply error of a command, or 'OK-ish' when it was allowed. */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'allowed';
  } catch (e) {
    return e instanceof Error ? e.message.split(' ')[0]! : String(e);
  }
}

describe('Redis ACL rules (pure)', () => {
  pure('each role names only its keys and commands', () => {
    const ns = 'xgsim:h:1:2:x';
    expect(aclRules(ns, { kind: 'dispatcher' })).toEqual([`%W~${ns}:req:*`, `%R~${ns}:resp:*`, `~${ns}:alive`, '+xadd', '+xtrim', '+xread', '+set', '+exists', '+client|setname']);
    const dm = aclRules(ns, { kind: 'device-model', servers: [8, 16], frontends: [1, 2, 2] });
    expect(dm.filter((r) => r.includes('~'))).toEqual([`~${ns}:req:8`, `~${ns}:applied:8`, `~${ns}:bufmark:8`, `~${ns}:req:16`, `~${ns}:applied:16`, `~${ns}:bufmark:16`, `~${ns}:resp:1`, `~${ns}:resp:2`]);
    expect(dm.some((r) => /\*|@/.test(r))).toBe(false);
    expect(aclRules(ns, { kind: 'admin' })).toEqual([`~${ns}:*`, '+scan', '+del', '+client|setname']);
    expect(aclRules(ns, { kind: 'campaign', pool: 'p' }).filter((r) => r.includes('~'))).toEqual(['~xgsim:pool:p:campaigns', '~xgsim:campaign:*']);
    // A glob in a namespace or pool would widen a pattern: refused.
    expect(() => aclRules('xgsim:*', { kind: 'admin' })).toThrow(RangeError);
    expect(() => aclRules(ns, { kind: 'campaign', pool: 'a*' })).toThrow(RangeError);
    expect(() => aclRules(ns, { kind: 'device-model', servers: [], frontends: [] })).toThrow(RangeError);
  });

  pure('URLs carry a user and password, or none', () => {
    expect(urlAs('redis://:pw@127.0.0.1:7000/2', 'u', 'p w')).toBe('redis://u:p%20w@127.0.0.1:7000/2');
    expect(withoutUser('rediss://u:p@h:1')).toBe('rediss://h:1');
  });
});

describe('Redis ACL users against a redis-server of the test\'s own', () => {
  it('with each role\'s credentials the protocol goes through, and the admin leaves no key; the users are deleted at the end', async () => {
    const seed = testSeed('redis-acl: protocol under ACL');
    const url = own.server().url;
    const ns = `xgsim:acltest:${seed}`;
    const root = new Redis(url, { maxRetriesPerRequest: 1 });
    const warn = vi.spyOn(console, 'warn');
    const acl = await RunAcl.create({ url, namespace: ns, roles: ROLES });
    const run = newRunKey();
    const keys = (s: number): Buffer => serverKey(run, s);
    const hv = await RedisIoreqBus.connect({ url: acl.url('dispatcher'), namespace: ns, keys });
    const dm = await RedisIoreqBus.connect({ url: acl.url('dm-d0'), namespace: ns, keys: (s) => (s === 8 ? keys(s) : undefined) });
    const admin = await RedisIoreqBus.connect({ url: acl.url('admin'), namespace: ns });
    try {
      const n = 1 + (seed % 5);
      await hv.publishRequests(Array.from({ length: n }, (_, k) => ({ server: 8, msg: req(k + 1) })));
      const items = await dm.readRequests(8, 'dm0', 500, 16);
      expect(items.map((i) => i.rejected)).toEqual(Array(n).fill(undefined));
      for (const item of items) {
        const m = item.msg as IoreqMsg;
        expect(await dm.answerOnce(8, `1:0:${m.seq}`, m.seq, 0, resp(m, m.seq))).toBeUndefined();
      }
      expect(await dm.ack(8, items.map((i) => i.id))).toBe(n);
      expect(await dm.applied(8, '1:0:1')).toEqual({ data: 1, fault: 0 });
      await dm.bufApplied(8, [], '1:0', { ...resp(req(0), 0), vcpu: 0, seq: 3, buf: 1 });
      expect(await dm.bufMark(8, '1:0')).toBe(3);
      expect(await dm.reclaim(8, 'dm1', 0, 16)).toEqual([]);
      const answers = await hv.readResponses(1, START_ID, 500, 64);
      expect(answers.items.map((a) => a.from)).toEqual([...Array(n).fill(8), 8]);
      await hv.reader('liveness').set(`${ns}:alive`, '1');
      expect(await hv.reader('liveness').exists(`${ns}:alive`)).toBe(1);
      expect((await root.keys(`${ns}:*`)).length).toBeGreaterThan(0);
      await admin.destroyNamespace();
      expect(await root.keys(`${ns}:*`)).toEqual([]);
      // No ready-check warning: the users may not send INFO, and their connections do not ask.
      expect(warn.mock.calls.flat().join('\n')).not.toMatch(/ready check/);
    } finally {
      await hv.close();
      await dm.close();
      await admin.close();
      expect(await acl.remove()).toBe(true);
      warn.mockRestore();
    }
    const users = (await root.call('ACL', 'USERS')) as string[];
    expect(users.filter((u) => u.startsWith(`xgsim-${acl.tag}-`))).toEqual([]);
    root.disconnect();
  });

  it('each role is refused (NOPERM) what it may not do: other servers\' streams and records, the campaign keys, deleting, configuring', async () => {
    const seed = testSeed('redis-acl: refusals');
    const url = own.server().url;
    const ns = `xgsim:acltest:${seed}:deny`;
    const other = `xgsim:acltest:${seed}:other`;
    const root = new Redis(url, { maxRetriesPerRequest: 1 });
    const acl = await RunAcl.create({ url, namespace: ns, roles: ROLES });
    const conns: Redis[] = [];
    const c = (role: string): Redis => {
      const r = as(acl, role);
      conns.push(r);
      return r;
    };
    try {
      // What exists: the other server's stream and records, a campaign, another run's keys.
      await root.xadd(`${ns}:req:24`, '*', 'm', 'x');
      await root.hset(`${ns}:applied:24`, '3:0:1', '1:0');
      await root.xadd('xgsim:campaign:c1:jobs', '*', 'm', 'job');
      await root.zadd('xgsim:pool:default:campaigns', 1, 'c1');
      await root.set(`${other}:alive`, '1');
      const dm = c('dm-d0');
      const script = "return redis.call('XADD', KEYS[1], '*', 'm', 'x')";
      const dmDenied = {
        'XADD another server\'s request stream': dm.xadd(`${ns}:req:24`, '*', 'm', 'forged'),
        'XADD another frontend\'s response stream': dm.xadd(`${ns}:resp:3`, '*', 'm', 'forged'),
        'XREADGROUP another server\'s stream': dm.call('XREADGROUP', 'GROUP', 'dm', 'c', 'STREAMS', `${ns}:req:24`, '>'),
        'HSET another server\'s answer record': dm.hset(`${ns}:applied:24`, '3:0:1', '9:0'),
        'HGET another server\'s answer record': dm.hget(`${ns}:applied:24`, '3:0:1'),
        'XRANGE the campaign\'s jobs': dm.xrange('xgsim:campaign:c1:jobs', '-', '+'),
        'ZRANGE the pool\'s campaigns': dm.zrange('xgsim:pool:default:campaigns', 0, -1),
        'XRANGE its own request stream (not a command it sends)': dm.xrange(`${ns}:req:8`, '-', '+'),
        'DEL its own records': dm.del(`${ns}:applied:8`),
        'KEYS': dm.keys('*'),
        'FLUSHALL': dm.flushall(),
        'CONFIG SET': dm.config('SET', 'maxmemory', '1'),
        'ACL SETUSER': dm.call('ACL', 'SETUSER', 'evil', 'on', 'nopass', '+@all', '~*'),
        'CLIENT KILL': dm.call('CLIENT', 'KILL', 'TYPE', 'normal'),
      };
      for (const [what, p] of Object.entries(dmDenied)) expect(await refusal(p), `device model: ${what}`).toBe('NOPERM');
      // A script is checked as its user: declared keys, and every command it runs.
      expect(await refusal(dm.eval(script, 1, `${ns}:resp:3`)), 'device model: EVAL onto another frontend\'s stream').toBe('NOPERM');
      expect(await refusal(dm.eval("return redis.call('XADD', 'xgsim:campaign:c1:results', '*', 'm', 'x')", 0)), 'device model: EVAL onto an undeclared campaign key').toMatch(/ERR|NOPERM/);
      // What it may do, it does (its own server).
      expect(await refusal(dm.xadd(`${ns}:resp:1`, '*', 'm', 'ok'))).toBe('allowed');

      const hv = c('dispatcher');
      const hvDenied = {
        'XREAD a request stream': hv.call('XREAD', 'STREAMS', `${ns}:req:24`, '0'),
        'XADD a response stream': hv.xadd(`${ns}:resp:1`, '*', 'm', 'forged'),
        'XADD another run\'s stream': hv.xadd(`${other}:req:8`, '*', 'm', 'x'),
        'DEL a request stream': hv.del(`${ns}:req:24`),
        'HSET an answer record': hv.hset(`${ns}:applied:24`, 'a', 'b'),
        'XRANGE the campaign\'s jobs': hv.xrange('xgsim:campaign:c1:jobs', '-', '+'),
      };
      for (const [what, p] of Object.entries(hvDenied)) expect(await refusal(p), `dispatcher: ${what}`).toBe('NOPERM');

      const admin = c('admin');
      expect(await refusal(admin.del(`${other}:alive`)), 'admin: DEL another run\'s key').toBe('NOPERM');
      expect(await refusal(admin.xadd(`${ns}:req:8`, '*', 'm', 'x')), 'admin: XADD').toBe('NOPERM');
      expect(await refusal(admin.del('xgsim:campaign:c1:jobs')), 'admin: DEL a campaign key').toBe('NOPERM');

      const host = c('campaign');
      expect(await refusal(host.zrange('xgsim:pool:default:campaigns', 0, -1)), 'campaign host: its pool').toBe('allowed');
      expect(await refusal(host.xadd(`${ns}:req:8`, '*', 'm', 'x')), 'campaign host: a run\'s stream').toBe('NOPERM');
      expect(await refusal(host.del(`${ns}:applied:24`)), 'campaign host: a run\'s record').toBe('NOPERM');

      // Nothing was changed by the refused writes.
      expect(await root.xlen(`${ns}:req:24`)).toBe(1);
      expect(await root.hget(`${ns}:applied:24`, '3:0:1')).toBe('1:0');
      expect(await root.exists(`${other}:alive`)).toBe(1);
      // Redis holds only the passwords' hashes.
      const list = ((await root.call('ACL', 'LIST')) as string[]).join('\n');
      for (const role of Object.keys(ROLES)) expect(list).not.toContain(decodeURIComponent(new URL(acl.url(role)).password));
    } finally {
      for (const r of conns) r.disconnect();
      expect(await acl.remove()).toBe(true);
      for (const k of [...(await root.keys(`${ns}:*`)), ...(await root.keys(`${other}:*`)), 'xgsim:campaign:c1:jobs', 'xgsim:pool:default:campaigns']) await root.del(k);
      root.disconnect();
    }
  });

  it('a user that cannot configure ACLs: create fails with one line, and leaves no user behind', async () => {
    const url = own.server().url;
    const root = new Redis(url, { maxRetriesPerRequest: 1 });
    const limited = await RunAcl.create({ url, namespace: 'xgsim:acltest:limited', roles: { dispatcher: { kind: 'dispatcher' } } });
    try {
      const e = await RunAcl.create({ url: limited.url('dispatcher'), namespace: 'xgsim:acltest:nested', roles: { admin: { kind: 'admin' } } }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toMatch(/^creating the run's Redis ACL users: NOPERM/);
      expect((e as Error).message).not.toContain('\n');
      expect(((await root.call('ACL', 'USERS')) as string[]).filter((u) => u.includes('-admin'))).toEqual([]);
    } finally {
      await limited.remove();
      root.disconnect();
    }
  });
});

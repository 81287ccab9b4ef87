/**
 * The dom0 virtio-GPU backend serving GPU frontends over IOREQs (issue 4),
 * on both transports: every primitive and the IOREQ path exercised, the
 * contents checked end to end, and the failure cases — a device model
 * killed mid-run, Redis connections killed or paused, garbage answers.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { Host, MAP_WINDOW_PAGES, type HostSpec } from '../hypervisor/host/host.js';
import { loadTopology, parseTopology } from '../orchestrator/config/topology.js';
import { hostSpecOf } from '../orchestrator/up/host-spec.js';
import { chooseTransport } from '../orchestrator/up/up.js';
import { RedisIoreqBus } from '../transport/redis-bus.js';
import { serverId } from '../transport/redis-end.js';
import { itIf, REDIS_URL, redisGate } from './redis-gate.js';
import { ownRedisIt } from './own-redis.js';
import { encode } from '../transport/messages.js';
import { IOS } from '../hypervisor/layout/ioreq-slots.js';
import { DOM } from '../hypervisor/layout/domains.js';
import { dmRevoke } from '../hypervisor/designs/primitives/revoke.js';
import { p2mGet } from '../hypervisor/xen/p2m.js';
import { entryType } from '../hypervisor/layout/p2m.js';
import { P2M } from '../hypervisor/public/types.js';
import { MAX_BLOB_PAGES, RES_PER_FE } from '../domains/gpu/protocol.js';
import { explain, outOf, runFor, testSeed, totalViolations } from './harness.js';
import { NO_BUGS } from '../hypervisor/xen/buggify.js';

const redisIt = itIf(await redisGate('tests/gpu.test.ts', 'the redis-transport tests'));

async function gpuSpec(seed: number, transport: 'ring' | 'redis', url = REDIS_URL): Promise<HostSpec> {
  const t = loadTopology('examples/gpu-desktop.yaml');
  const tr = await chooseTransport(transport, url, seed);
  return { ...hostSpecOf(t, { seed, checking: true, buggify: NO_BUGS, check_interval_ms: 200 }), transport: tr.choice };
}

function expectHealthy(r: Awaited<ReturnType<typeof runFor>>): void {
  expect(r.errors).toEqual([]);
  expect(totalViolations(r), explain(r)).toBe(0);
  expect(r.stats['check_fails'], explain(r)).toBe(0);
  expect(r.frames.conserved).toBe(true);
  expect(r.frames.free).toBe(r.frames.total);
}

for (const transport of ['ring', 'redis'] as const) {
  describe(`gpu-desktop over ${transport}`, () => {
    (transport === 'redis' ? redisIt : it)('render, compute-svm and an adversary: every primitive and IOREQ kind used, contents checked, nothing leaks', async () => {
      const seed = testSeed(`gpu-desktop ${transport}`);
      // Run until every primitive and both ioreq kinds were used (a loaded CI machine is slow), at most 30 s.
      const r = await runFor(new Host(await gpuSpec(seed, transport)), 2000, async (h) => {
        const keys = ['maps', 'revokes', 'steals', 'returns', 'ioreqs_sent', 'ioreq_faults'];
        for (let i = 0; i < 280 && keys.some((k) => (h.stats()[k] ?? 0) < 3); i++) await new Promise((res) => setTimeout(res, 100));
      });
      expectHealthy(r);
      for (const k of ['maps', 'revokes', 'steals', 'returns', 'ioreqs_sent', 'ioreq_faults']) expect(r.stats[k], k).toBeGreaterThan(0);
      // Contents: dom0 saw every word a guest drew into a blob; a guest read every word the GPU wrote.
      expect(outOf(r, 1, 'blobs_checked'), explain(r)).toBeGreaterThan(0);
      expect(outOf(r, 2, 'svm_jobs_checked'), explain(r)).toBeGreaterThan(0);
      // Nothing after Revoke: every read after UNMAP faulted.
      expect(outOf(r, 1, 'after_revoke_faults')).toBe(outOf(r, 1, 'frames_rendered'));
      // The adversary's attacks were all refused.
      const succeeded = r.vcpu_results.flatMap((v) => Object.keys(v.out).filter((k) => k.startsWith('succeeded_')));
      expect(succeeded).toEqual([]);
    });

    (transport === 'redis' ? redisIt : it)('a device model killed mid-run is restarted and every ioreq completes exactly once', async () => {
      const seed = testSeed(`kill device model ${transport}`);
      const host = new Host(await gpuSpec(seed, transport));
      let resumed = -1;
      const r = await runFor(host, 1500, async (h) => {
        for (let k = 0; k < 2; k++) {
          const before = h.dmRestarts;
          h.killDeviceModel();
          for (let i = 0; i < 500 && h.dmRestarts === before; i++) await new Promise((res) => setTimeout(res, 10));
        }
        // Guests resume after the restarts: userptr jobs (three commands each) keep completing.
        const returns = h.stats()['returns'] ?? 0;
        for (let i = 0; i < 600 && (h.stats()['returns'] ?? 0) === returns; i++) await new Promise((res) => setTimeout(res, 10));
        resumed = (h.stats()['returns'] ?? 0) - returns;
      });
      expectHealthy(r);
      expect(r.transport.dm_restarts).toBe(2);
      expect(resumed, explain(r)).toBeGreaterThan(0);
    });
  });
}

describe('redis transport failures', () => {
  // CLIENT PAUSE ALL stops every client of a server: this test pauses a Redis of its own, never REDIS_URL's.
  const own = ownRedisIt('tests/gpu.test.ts', 'the CLIENT PAUSE test');
  own.it('CLIENT KILL and CLIENT PAUSE of the transport mid-run: clients reconnect, nothing lost or applied twice', async () => {
    const seed = testSeed('client kill and pause');
    const url = own.server().url;
    const spec = await gpuSpec(seed, 'redis', url);
    const admin = new Redis(url);
    try {
      const r = await runFor(new Host(spec), 2500, async () => {
        const list = await admin.client('LIST');
        const ours = String(list)
          .split('\n')
          .filter((l) => l.includes(`name=xgsim-`) && (spec.transport?.kind === 'redis' ? l.includes(spec.transport.namespace) : false));
        for (const l of ours) {
          const id = /id=(\d+)/.exec(l)?.[1];
          if (id !== undefined) await admin.client('KILL', 'ID', id);
        }
        await admin.client('PAUSE', 300, 'ALL');
        await new Promise((res) => setTimeout(res, 800));
      });
      expectHealthy(r);
      expect(outOf(r, 2, 'svm_jobs_checked'), explain(r)).toBeGreaterThan(0);
    } finally {
      admin.disconnect();
    }
  });

  redisIt('garbage and backward states from the device model (its MAC) crash that guest only; from a stranger (no MAC) they are rejected; the host goes on, nothing leaks', async () => {
    const seed = testSeed('garbage answers');
    const spec = await gpuSpec(seed, 'redis');
    const host = new Host(spec);
    const r = await runFor(host, 1500, async (h) => {
      if (spec.transport?.kind !== 'redis') return;
      // The device model's keys (the host's, as a genuine one would have them), and a stranger without.
      const dm = await RedisIoreqBus.connect({ url: REDIS_URL, namespace: spec.transport.namespace, keys: (s) => h.transportKey(s) });
      const stranger = await RedisIoreqBus.connect({ url: REDIS_URL, namespace: spec.transport.namespace });
      try {
        const slot = h.m.dom.at(2, DOM.VCPU_BASE);
        const seq = Atomics.load(h.m.ios.slots, h.m.ios.idx(slot) + IOS.SEQ);
        // A stranger: garbage for the adversary (d3), a backward state and a future seq for compute (d2).
        await stranger.injectRawResponse(3, Buffer.from([0xc1, 0xff, 0x00, 0x13]));
        await stranger.injectRawResponse(2, encode({ host: 'evil', domid: 2, vcpu: 0, seq, data: 0, state: 1, error: 0, buf: 0 }));
        await stranger.injectRawResponse(2, encode({ host: 'evil', domid: 2, vcpu: 0, seq: seq + 1, data: 0, state: 3, error: 0, buf: 0 }));
        // desktop (d1): bytes that are not msgpack, from its own server.
        await dm.injectRawResponse(1, Buffer.from([0xc1, 0xff, 0x00, 0x13]), serverId(1, 0));
      } finally {
        await dm.close();
        await stranger.close();
      }
      await new Promise((res) => setTimeout(res, 1000));
    });
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(r.transport.malformed).toBeGreaterThan(0);
    expect(r.transport.rejected).toBeGreaterThanOrEqual(3);
    expect(r.transport.guests_crashed).toBe(1);
    expect(r.events.some((e) => e.includes('crashing d1'))).toBe(true);
    expect(r.domains.find((d) => d.name === 'desktop')!.state).not.toBe('running');
    // dom0, compute and the adversary went on.
    for (const name of ['dom0', 'compute', 'evil']) expect(r.domains.find((d) => d.name === name)!.state, name).toBe('running');
    expect(r.frames.free).toBe(r.frames.total);
  });
});

describe('MMU notifier', () => {
  it('Revoke from dom0\'s kernel completes while the device model is stopped', async () => {
    const seed = testSeed('mmu notifier without device model');
    const host = new Host(await gpuSpec(seed, 'ring'));
    let revoked = -1;
    let left = -1;
    const r = await runFor(host, 1000, async (h) => {
      // Kill the device model and keep it down.
      h.killDeviceModel(true);
      for (let i = 0; i < 500 && !h.deviceModelDown(); i++) await new Promise((res) => setTimeout(res, 10));
      expect(h.deviceModelDown()).toBe(true);
      // dom0's kernel path: Revoke every blob window (the MMU notifier freeing GPU memory) — it must
      // complete without the device model, which is not there to answer anything.
      revoked = 0;
      for (const fe of [1, 2, 3]) {
        const g = gpuWindow(h, fe);
        if (dmRevoke(h.m, 0, { fe, gfn: g.window, count: g.pages }) === 0) revoked++;
      }
      left = [1, 2, 3].reduce((n, fe) => n + mappedIn(h, fe), 0);
      expect(h.deviceModelDown()).toBe(true);
      h.releaseDeviceModel();
    });
    expect(revoked).toBe(3);
    expect(left).toBe(0);
    expect(outOf(r, 0, 'eviction_fail')).toBe(0);
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(r.frames.free).toBe(r.frames.total);
  });
});

function gpuWindow(h: Host, fe: number): { window: number; pages: number } {
  const d = h.spec.domains[fe]!;
  return { window: Math.max(d.memory_pages, d.max_pages) + (d.vcpus + 1) * MAP_WINDOW_PAGES, pages: RES_PER_FE * MAX_BLOB_PAGES };
}

/** Map'd (mmio_direct with a frame) gfns left in a frontend's blob window. */
function mappedIn(h: Host, fe: number): number {
  const g = gpuWindow(h, fe);
  let n = 0;
  for (let x = g.window; x < g.window + g.pages; x++) {
    const e = p2mGet(h.m, fe, x);
    if (e !== 0 && entryType(e) === P2M.mmio_direct) n++;
  }
  return n;
}

describe('topology knobs of the GPU device', () => {
  const topo = (policy: string): string => `
host: { frames: 16384 }
domains:
  - name: dom0
    memory: 16MiB
    vcpus: 2
    devices: [{ kind: virtio-gpu, name: gpu0, bar: 4MiB, evictions_per_s: 3000 }]
  - name: desktop
    backend: dom0
    memory: 4MiB
    vcpus: 1
    workload: { kind: render, buffers: 2, buffer_pages: 8, fault_policy: ${policy} }
`;
  for (const policy of ['remap', 'fail'] as const) {
    it(`fault_policy ${policy} under an eviction storm (evictions_per_s 3000): ${policy === 'remap' ? 'evicted blobs are mapped back' : 'the guest sees its accesses fail, nothing is remapped'}`, async () => {
      const seed = testSeed(`gpu fault_policy ${policy}`);
      const t = parseTopology(topo(policy), 'knobs.yaml');
      const spec = { ...hostSpecOf(t, { seed, checking: true, buggify: NO_BUGS, check_interval_ms: 200 }), transport: { kind: 'ring' as const } };
      const r = await runFor(new Host(spec), 1500, async (h) => {
        for (let i = 0; i < 200 && (h.stats()['ioreq_faults'] ?? 0) < 20; i++) await new Promise((res) => setTimeout(res, 50));
      });
      expectHealthy(r);
      expect(outOf(r, 0, 'evictions'), explain(r)).toBeGreaterThan(0);
      expect(r.stats['ioreq_faults'], explain(r)).toBeGreaterThan(0);
      if (policy === 'remap') expect(outOf(r, 0, 'remaps'), explain(r)).toBeGreaterThan(0);
      else {
        expect(outOf(r, 0, 'remaps'), explain(r)).toBe(0);
        expect(outOf(r, 1, 'draw_faults'), explain(r)).toBeGreaterThan(0);
      }
    });
  }
});

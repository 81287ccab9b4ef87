/**
 * The end of a run (issue 17): a run whose checks could not see everything
 * says `unknown` with the reason, never PASS — ioreqs the stop gave up after
 * the drain's grace (a device model that stopped answering), and a gap in the
 * periodic checks (the host's main thread held up). The command line's exit
 * code for it is tests/cli.test.ts's.
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../hypervisor/host/host.js';
import { NO_BUGS } from '../hypervisor/xen/buggify.js';
import { IOREQ_STATE } from '../hypervisor/public/ioreq.js';
import { IOS } from '../hypervisor/layout/ioreq-slots.js';
import { DOM } from '../hypervisor/layout/domains.js';
import { loadTopology } from '../orchestrator/config/topology.js';
import { hostSpecOf } from '../orchestrator/up/host-spec.js';
import { summarize } from '../orchestrator/up/summary.js';
import { hostOf, runFor, testSeed } from './harness.js';

/** Whether a vCPU of a frontend waits on an ioreq now. */
function frontendWaiting(h: Host): boolean {
  for (const d of h.spec.domains.filter((x) => x.role === 'frontend')) {
    const base = h.m.dom.at(d.domid, DOM.VCPU_BASE);
    for (let v = 0; v < d.vcpus; v++) {
      const st = Atomics.load(h.m.ios.slots, h.m.ios.idx(base + v) + IOS.STATE);
      if (st === IOREQ_STATE.READY || st === IOREQ_STATE.INPROCESS) return true;
    }
  }
  return false;
}

describe('the end of a run', () => {
  it('a device model killed and held down at the end: the drain gives up, the ioreqs it took are unanswered, `unknown` with the reason', async () => {
    const seed = testSeed('end of run: device model held down');
    const spec = { ...hostSpecOf(loadTopology('examples/gpu-desktop.yaml'), { seed, checking: true, buggify: NO_BUGS, check_interval_ms: 200 }), transport: { kind: 'ring' as const } };
    let waiting = false;
    const r = await runFor(new Host(spec), 1000, async (h) => {
      // Dies after claiming its next requests, and stays down (no chaos executor releases it).
      h.killDeviceModel(true);
      for (let i = 0; i < 500 && !(h.deviceModelDown() && frontendWaiting(h)); i++) await new Promise((res) => setTimeout(res, 10));
      waiting = h.deviceModelDown() && frontendWaiting(h);
    });
    expect(waiting).toBe(true);
    const s = summarize(r, { seed, transport: 'ring', buggify: [] });
    expect(s.errors).toEqual([]);
    expect(s.violations).toEqual([]);
    expect(s.ioreq.abandoned_at_stop, JSON.stringify(s.ioreq)).toBeGreaterThan(0);
    expect(s.ioreq.unaccounted).toBe(0);
    expect(s.unknown, JSON.stringify(s.unknown)).toEqual([expect.stringMatching(/^\d+ ioreqs? still unanswered \d+ ms after the end of the run: .*\(waiting on an ioreq to dom0's device model, (taken, unanswered|not taken)\)/) as unknown]);
    expect(s.verdict).toBe('unknown');
  });

  it('the host\'s main thread held up past the bound: the periodic checks missed their periods, `unknown` with the gap', async () => {
    const seed = testSeed('end of run: checker gap');
    // check_interval_ms 100: the bound is its floor, 2 s (checkGapBound).
    const host = hostOf([{ workload: { kind: 'grant-ping' }, peers: [1] }, { workload: { kind: 'grant-ping' }, peers: [0] }], { seed, check_interval_ms: 100 });
    const r = await runFor(host, 300, () => {
      // This is the host's main thread (the host runs in this process): block it, timers and all, for 2.5 s.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2500);
    });
    const s = summarize(r, { seed, transport: 'ring', buggify: [] });
    expect(s.errors).toEqual([]);
    expect(s.violations).toEqual([]);
    expect(s.check_gap_ms).toBeGreaterThanOrEqual(2500);
    expect(s.unknown, JSON.stringify(s.unknown)).toEqual([expect.stringMatching(/^the periodic checks stopped for \d+ ms \(every 100 ms asked, 2000 ms tolerated\): the host's main thread was held up/) as unknown]);
    expect(s.verdict).toBe('unknown');
  });
});

import { describe, expect, it } from 'vitest';
import { RTT_BUCKETS, rttQuantile } from './rtt-hist.js';
import { VcpuTable } from './vcpus.js';

describe('waits for a pCPU: log-linear buckets, two significant digits (issue 17 item 9)', () => {
  it('2.1 ms and 4 ms of waiting are told apart, each within 1 % (log2 buckets said ≤ 4096 µs for both)', () => {
    const t = new VcpuTable(new SharedArrayBuffer(VcpuTable.bytes()));
    for (let i = 0; i < 10; i++) t.countSchedWait(3, 2100);
    for (let i = 0; i < 10; i++) t.countSchedWait(3, 4000);
    const h = Array.from(t.schedWait.subarray(3 * RTT_BUCKETS, 4 * RTT_BUCKETS));
    const p50 = rttQuantile(h, 0.5);
    const p99 = rttQuantile(h, 0.99);
    expect(Math.abs(p50 - 2100) / 2100).toBeLessThan(0.01);
    expect(Math.abs(p99 - 4000) / 4000).toBeLessThan(0.01);
    // Another slot's waits are its own.
    expect(t.schedWait.subarray(4 * RTT_BUCKETS, 5 * RTT_BUCKETS).every((x) => x === 0)).toBe(true);
  });
});

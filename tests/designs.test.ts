/**
 * Every design runs the design-neutral workloads (grant-ping, idle) on real
 * threads, with every check on: the host builds its machine with the
 * design (MachineConfig.design, which orchestrator/up/host-spec.test.ts
 * follows into designOf), the guests share pages through the grant table,
 * and the run passes — the design's region, teardown and checks hold up
 * in a whole run, not only in a scenario.
 *
 * And every design runs the GPU workloads through its sharing adapter
 * (domains/gpu/sharing.ts) — render, compute with shared virtual memory and
 * a hostile frontend, under dom0's memory pressure — with the data checked
 * and the design's own behaviour seen in its counts: grants' end-access
 * refused while mapped, evictions refused under grants and pins, faults
 * to the lender after a reclaim.
 * Workers come from dist/: `npm run build` first.
 */
import { describe, expect, it } from 'vitest';
import { DESIGN_NAMES } from '../hypervisor/designs/index.js';
import { parseTopology } from '../orchestrator/config/topology.js';
import { hostSpecOf } from '../orchestrator/up/host-spec.js';
import { summarize } from '../orchestrator/up/summary.js';
import { runHost } from '../orchestrator/up/up.js';
import { testSeed } from './harness.js';
import { NO_BUGS } from '../hypervisor/xen/buggify.js';

const topology = (design: string): string => `name: t-${design}
design: ${design}
domains:
  - { name: dom0, vcpus: 1 }
  - { name: g1, backend: dom0, vcpus: 1, workload: { kind: grant-ping, pages: 2 } }
  - { name: g2, backend: dom0, vcpus: 1, workload: { kind: grant-ping, pages: 2 } }
`;

const gpuTopology = (design: string, device = ''): string => `name: gpu-${design}
design: ${design}
host: { frames: 8192 }
domains:
  - { name: dom0, role: backend, memory: 8MiB, max_memory: 12MiB, vcpus: 2, devices: [{ kind: virtio-gpu, name: gpu0, bar: 2MiB, evictions_per_s: 300${device} }] }
  - { name: r, role: frontend, backend: dom0, memory: 2MiB, vcpus: 1, workload: { kind: render, buffers: 4, buffer_pages: 4 } }
  - { name: c, role: frontend, backend: dom0, memory: 2MiB, vcpus: 1, workload: { kind: compute-svm, buffers: 4, buffer_pages: 4 } }
  - { name: e, role: frontend, backend: dom0, memory: 2MiB, vcpus: 1, workload: { kind: adversary } }
`;

/** The GPU topology on real threads for 1.5 s over the ring; its summary, once it has passed. */
async function passingRun(yaml: string, seed: number): Promise<ReturnType<typeof summarize>> {
  const spec = { ...hostSpecOf(parseTopology(yaml, 't.yaml'), { seed, checking: true, buggify: NO_BUGS, check_interval_ms: 100, pcpus: 2 }), transport: { kind: 'ring' as const } };
  const s = summarize(await runHost(spec, 1500, { quiet: true }), { seed, transport: 'ring', buggify: [] });
  expect(s.verdict, JSON.stringify({ inv: s.invariants, fails: s.ops.workload_check_fails, v: s.violations.slice(0, 3) })).toBe('pass');
  return s;
}

describe('designs on real threads', () => {
  it.each(DESIGN_NAMES.map((d) => [d]))('design %s: the GPU workloads share through its adapter, check their data and pass', async (design) => {
    const seed = testSeed(`design ${design}: the GPU workloads share through its adapter, check their data and pass`);
    const s = await passingRun(gpuTopology(design), seed);
    expect(s.ops.blobs_checked).toBeGreaterThan(0);
    expect(s.ops.svm_jobs_checked).toBeGreaterThan(0);
    expect(s.ops.attacks_refused).toBeGreaterThan(0);
    const c = s.costs!;
    expect(c.revocations).toBeGreaterThan(0);
    expect(c.shared_peak_pages).toBeGreaterThan(0);
    if (design === 'grants' || design === 'pinned-userptr') {
      // The pages are the frontend's, referenced by dom0's grant or foreign map: pressure cannot take them.
      expect(c.evictions_refused).toBeGreaterThan(0);
      expect(s.ops.evictions).toBe(0);
      expect(c.faults_served).toBe(0);
    } else {
      // dom0's own memory: Revoked or reclaimed under pressure, and a later access faults to dom0.
      expect(c.evictions_refused).toBe(0);
      expect(s.ops.evictions).toBeGreaterThan(0);
      expect(c.faults_served).toBeGreaterThan(0);
    }
    // Revocation under grants is the frontend's end-access, refused while dom0 maps the page.
    expect(c.end_access_refused > 0).toBe(design === 'grants');
  }, 60_000);

  it('design lending, missing_page: zero: a fault the lender has no page for gets a zero page, which the guests accept and nothing else', async () => {
    const seed = testSeed('design lending, missing_page: zero');
    const s = await passingRun(gpuTopology('lending', ', missing_page: zero'), seed);
    expect(s.ops.zero_pages).toBeGreaterThan(0);
    expect(s.ops.blobs_checked).toBeGreaterThan(0);
    expect(s.ops.svm_jobs_checked).toBeGreaterThan(0);
    expect(s.ops.remaps).toBeGreaterThan(0); // an evicted buffer still comes back as itself, not as zeros
  }, 60_000);

  it.each(DESIGN_NAMES.map((d) => [d]))('design %s: grant-ping guests pass every check', async (design) => {
    const seed = testSeed(`design ${design}: grant-ping guests pass every check`);
    const topo = parseTopology(topology(design), 't.yaml');
    const spec = { ...hostSpecOf(topo, { seed, checking: true, buggify: NO_BUGS, check_interval_ms: 100, pcpus: 2 }), transport: { kind: 'ring' as const } };
    expect(spec.design).toBe(design);
    const s = summarize(await runHost(spec, 800, { quiet: true }), { seed, transport: 'ring', buggify: [] });
    expect(s.verdict, JSON.stringify(s.invariants)).toBe('pass');
    expect(s.ops.grant_map).toBeGreaterThan(0);
  }, 60_000);
});

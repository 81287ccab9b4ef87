/**
 * Every design runs the design-neutral workloads (grant-ping, idle) on real
 * threads, with every check on: the host builds its machine with the
 * design (MachineConfig.design, which orchestrator/up/host-spec.test.ts
 * follows into designOf), the guests share pages through the grant table,
 * and the run passes — the design's region, teardown and checks hold up
 * in a whole run, not only in a scenario.
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

describe('designs on real threads', () => {
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

/**
 * A topology's `design:` reaches the machine the host builds
 * (MachineConfig.design, which every worker reads from the shared config),
 * and the machine runs that design (xen/design.ts designOf).
 */
import { describe, expect, it } from 'vitest';
import { EOPNOTSUPP } from '../../hypervisor/public/errno.js';
import { Host } from '../../hypervisor/host/host.js';
import { designOf } from '../../hypervisor/xen/design.js';
import { parseTopology } from '../config/topology.js';
import { hostSpecOf } from './host-spec.js';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';

const TOPO = 'domains:\n  - { name: dom0, frames: 64 }\n  - { name: fe, frames: 64, backend: dom0, workload: { kind: idle } }\n';
const run = { seed: 1, checking: true, buggify: NO_BUGS, check_interval_ms: 0, pcpus: 0 };

describe('hostSpecOf: design', () => {
  it('absent: the spec names none and the machine runs the primitives', () => {
    const spec = hostSpecOf(parseTopology(TOPO, 't.yaml'), run);
    expect('design' in spec).toBe(false);
    const host = new Host(spec);
    expect(host.m.config.design).toBeUndefined();
    expect(designOf(host.m).name).toBe('primitives');
  });

  it('named: the spec and the machine config carry it', () => {
    const spec = hostSpecOf(parseTopology(`design: primitives\n${TOPO}`, 't.yaml'), run);
    expect(spec.design).toBe('primitives');
    const host = new Host(spec);
    expect(host.m.config.design).toBe('primitives');
    expect(designOf(host.m).name).toBe('primitives');
  });

  it('grants: the machine runs it, and its dm_ops are EOPNOTSUPP', () => {
    const host = new Host(hostSpecOf(parseTopology(`design: grants\n${TOPO}`, 't.yaml'), run));
    const d = designOf(host.m);
    expect(d.name).toBe('grants');
    expect(d.map(host.m, 0, { fe: 1, source: { kind: 'ram', gfn: 1 }, count: 1, at: 0x50 })).toEqual({ rc: -EOPNOTSUPP, index: -1, id: 0 });
    expect(d.revoke(host.m, 0, { fe: 1, gfn: 0x50, count: 1 })).toBe(-EOPNOTSUPP);
  });

  it('a spec naming a design no thread registered is refused when the machine is built', () => {
    const spec = { ...hostSpecOf(parseTopology(TOPO, 't.yaml'), run), design: 'no-such-design' };
    expect(() => new Host(spec)).toThrow(/no design 'no-such-design' \(known: primitives, grants, pinned-userptr, lending\)/);
  });
});

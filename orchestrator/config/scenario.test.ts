import { describe, expect, it } from 'vitest';
import { isInputError } from './errors.js';
import { parseExpect, parseScenario, STEP_OPS, type Scenario, type Step } from './scenario.js';

/** A scenario in the shape docs/formats.md §3 documents (the original contract's example: it parses; §3 shows one that also runs). */
const STEAL_REFUSED = `name: steal-refused-while-granted
topology:                      # same schema as above; durations/workloads ignored
  domains:
    - { name: dom0, role: backend, memory: 4MiB }
    - { name: fe, role: frontend, backend: dom0, memory: 4MiB }
    - { name: peer, role: frontend, memory: 4MiB }
steps:
  - grant:   { domain: fe, ref: 8, to: peer, gfn: 0x10, readonly: false }
  - steal:   { by: dom0, from: fe, gfn: 0x10, count: 1, expect: EBUSY }
  - end_grant: { domain: fe, ref: 8 }
  - steal:   { by: dom0, from: fe, gfn: 0x10, count: 1, into: 0x200, expect: OK }
  - write:   { domain: dom0, gfn: 0x200, offset: 0, value: 0xfeedface }
  - read:    { domain: fe, gfn: 0x10, offset: 0, expect: 0xfeedface }
  - check: invariants
`;

const TOPO = `topology:
  host: { page_size: 4096 }
  domains:
    - { name: dom0, role: backend, memory: 4MiB, devices: [{ kind: virtio-gpu, name: gpu0, bar: 1MiB }] }
    - { name: fe, role: frontend, backend: dom0, memory: 4MiB, workload: { kind: render }, vcpus: 2, passthrough: sync_pt }
    - { name: peer, role: frontend, memory: 4MiB }
`;

function steps(body: string): readonly Step[] {
  return parseScenario(`${TOPO}steps:\n${body}`, 's.yaml').steps;
}

function errorOf(body: string): string {
  try {
    parseScenario(`${TOPO}steps:\n${body}`, 's.yaml');
  } catch (e) {
    if (isInputError(e)) return e.toString();
    throw e;
  }
  throw new Error('expected an InputError');
}

describe('parseScenario', () => {
  it('normalizes the docs/formats.md example', () => {
    const s = parseScenario(STEAL_REFUSED, 'steal.yaml');
    const want: Scenario = {
      name: 'steal-refused-while-granted',
      topology: {
        name: 'steal-refused-while-granted',
        host: { frames: 3 * 1024 + 1024, page_size_bytes: 4096, pcpus: 'auto' },
        transport: 'auto',
        transitive_revoke: true,
        domains: [
          { name: 'dom0', domid: 0, role: 'backend', memory_pages: 1024, max_pages: 1024, vcpus: 1, devices: [], workload: { kind: 'idle' }, privileged: true, paddr_bits: 36 },
          {
            name: 'fe', domid: 1, role: 'frontend', backend: 'dom0', memory_pages: 1024, max_pages: 1024, vcpus: 1, devices: [],
            workload: { kind: 'idle' }, privileged: false,
            paddr_bits: 36,
          },
          { name: 'peer', domid: 2, role: 'frontend', memory_pages: 1024, max_pages: 1024, vcpus: 1, devices: [], workload: { kind: 'idle' }, privileged: false, paddr_bits: 36 },
        ],
      },
      steps: [
        { op: 'grant', domain: 'fe', ref: 8, to: 'peer', gfn: 0x10, readonly: false, expect: { kind: 'ok' }, line: 8 },
        { op: 'steal', by: 'dom0', from: 'fe', gfn: 0x10, count: 1, expect: { kind: 'errno', name: 'EBUSY', errno: 16 }, line: 9 },
        { op: 'end_grant', domain: 'fe', ref: 8, expect: { kind: 'ok' }, line: 10 },
        { op: 'steal', by: 'dom0', from: 'fe', gfn: 0x10, count: 1, into: 0x200, expect: { kind: 'ok' }, line: 11 },
        { op: 'write', domain: 'dom0', gfn: 0x200, offset: 0, width: 4, value: 0xfeedfacen, expect: { kind: 'ok' }, line: 12 },
        { op: 'read', domain: 'fe', gfn: 0x10, offset: 0, width: 4, expect: { kind: 'value', value: 0xfeedfacen }, line: 13 },
        { op: 'check', checks: ['invariants'], line: 14 },
      ],
    };
    expect(s).toEqual(want);
  });

  it('ignores workloads and duration in the topology', () => {
    const s = parseScenario(`name: x\n${TOPO.replace('topology:\n', 'topology:\n  duration: 5s\n')}steps:\n  - check: no_leaks\n`, 's.yaml');
    expect(s.topology.domains.every((d) => d.workload.kind === 'idle')).toBe(true);
    expect('duration_ms' in s.topology).toBe(false);
    expect(s.topology.domains[0]?.devices).toEqual([{ kind: 'virtio-gpu', name: 'gpu0', bar_pages: 256, evictions_per_s: 20 }]);
  });

  it('keeps the optional scenario fields', () => {
    const s = parseScenario(`name: n\ndescription: d\nskip: not yet\nseed: 7\ntimeout: 2s\n${TOPO}steps:\n  - check: invariants\n`, 'x.yaml');
    expect([s.name, s.description, s.skip, s.seed, s.timeout_ms]).toEqual(['n', 'd', 'not yet', 7, 2000]);
    const t = parseScenario(`${TOPO}steps:\n  - check: invariants\n`, 'dir/unnamed.yaml');
    expect(t.name).toBe('unnamed');
    expect(['description', 'skip', 'seed', 'timeout_ms'].some((k) => k in t)).toBe(false);
  });

  it('parses every step of the vocabulary with its defaults', () => {
    const got = steps(`  - populate: { domain: fe, gfn: 0x2000, count: 4 }
  - balloon_out: { domain: fe, gfn: 0x2000 }
  - grant: { domain: fe, ref: 1, to: peer, gfn: 3, readonly: true }
  - end_grant: { domain: fe, ref: 1, to: peer, gfn: 3, expect: GNTST_general_error }
  - map_grant: { domain: peer, from: fe, ref: 1, at: 0x400, handle: h }
  - unmap_grant: { domain: peer, handle: h }
  - unmap_grant: { domain: peer, handle: 99, expect: GNTST_bad_handle }
  - unmap_grant: { domain: peer, at: 0x400 }
  - foreign_map: { by: dom0, from: fe, gfn: 5, at: 0x3000 }
  - foreign_unmap: { by: dom0, at: 0x3000 }
  - grant_copy: { domain: peer, from: fe, ref: 1, to_gfn: 0x20, dst_offset: 8, expect: GNTST_okay }
  - on_hook: { hook: maptrack.pop, steps: [{ grant: { domain: fe, ref: 2, to: peer, gfn: 4 } }] }
  - map: { by: dom0, to: fe, gfn: 0x100, count: 8, at: 0x1000, id: m1 }
  - map: { by: dom0, to: fe, bar: gpu0, offset: 4, count: 2, at: 0x1100, type: mmio_direct }
  - revoke: { by: dom0, id: m1 }
  - revoke: { by: dom0, domain: fe, gfn: 0x1100, count: 2 }
  - steal: { by: dom0, from: fe, gfn: 0x10 }
  - return: { by: dom0, to: fe, gfn: 0x200, count: 1, at: 0x10 }
  - read: { domain: fe, gfn: 0, offset: 8, width: 8, expect: FAULT }
  - read: { domain: fe, gfn: 0, value: "0x10" }
  - write: { domain: fe, gfn: "0x10", offset: 4088, width: 8, value: 0xffffffffffffffff }
  - hypercall_copy: { domain: fe, gfn: 0x10, dir: from_guest }
  - hypercall_copy: { domain: fe, gfn: 0x10, dir: to_guest, bytes: 100, expect: EFAULT }
  - dma_read: { domain: fe, gfn: 0x10, offset: 4, expect: IOMMU_FAULT }
  - dma_write: { domain: fe, gfn: 0x10, value: 0xfe }
  - iomem_permit: { domain: fe, start: 0x80000, count: 16, allow: false }
  - ioreq_server: { by: dom0, for: fe, ranges: [{ start: 0x1000, count: 16 }, { start: 0x2000 }], fault_policy: remap, id: s }
  - iomem_permit: { by: peer, domain: fe, start: 0xffffffffffffffff, count: 2 }
  - current_reservation: { domain: fe, expect: 256 }
  - maximum_reservation: { domain: dom0, of: fe, expect: EPERM }
  - set_mem_type: { by: dom0, domain: fe, gfn: 0x10, count: 2, type: ram_ro }
  - set_ioreq_server_state: { by: dom0, for: fe, id: s }
  - on_hook: { hook: ioreq.wait, steps: [{ ioreq_answer: { by: dom0, domain: fe, state: IORESP_READY, data: 7 } }] }
  - read: { domain: fe, gfn: 0x1000 }
  - revoke: { by: dom0, domid: 9, gfn: 0x1100 }
  - crash: { domain: peer, expect: IOREQ }
  - destroy: { domain: peer }
  - check: [invariants, frames_conserved, no_leaks]
`);
    const ok = { kind: 'ok' } as const;
    expect(got.map(({ line: _line, ...rest }) => rest)).toEqual([
      { op: 'populate', domain: 'fe', gfn: 0x2000, count: 4, expect: ok },
      { op: 'balloon_out', domain: 'fe', gfn: 0x2000, count: 1, expect: ok },
      { op: 'grant', domain: 'fe', ref: 1, to: 'peer', gfn: 3, readonly: true, expect: ok },
      { op: 'end_grant', domain: 'fe', ref: 1, to: 'peer', gfn: 3, expect: { kind: 'gntst', name: 'GNTST_general_error', status: -1 } },
      { op: 'map_grant', domain: 'peer', from: 'fe', ref: 1, at: 0x400, readonly: false, handle: 'h', expect: ok },
      { op: 'unmap_grant', domain: 'peer', handle: { kind: 'name', name: 'h' }, expect: ok },
      { op: 'unmap_grant', domain: 'peer', handle: { kind: 'raw', value: 99 }, expect: { kind: 'gntst', name: 'GNTST_bad_handle', status: -4 } },
      { op: 'unmap_grant', domain: 'peer', at: 0x400, expect: ok },
      { op: 'foreign_map', by: 'dom0', from: 'fe', gfn: 5, at: 0x3000, expect: ok },
      { op: 'foreign_unmap', by: 'dom0', at: 0x3000, expect: ok },
      {
        op: 'grant_copy', domain: 'peer', src: { kind: 'ref', domain: 'fe', ref: 1, offset: 0 }, dst: { kind: 'gfn', gfn: 0x20, offset: 8 }, len: 4,
        expect: { kind: 'gntst', name: 'GNTST_okay', status: 0 },
      },
      { op: 'on_hook', hook: 'maptrack.pop', steps: [{ op: 'grant', domain: 'fe', ref: 2, to: 'peer', gfn: 4, readonly: false, expect: ok, line: 19 }] },
      { op: 'map', by: 'dom0', to: 'fe', source: { kind: 'ram', gfn: 0x100 }, count: 8, at: 0x1000, id: 'm1', expect: ok },
      { op: 'map', by: 'dom0', to: 'fe', source: { kind: 'bar', bar: 'gpu0', offset: 4 }, count: 2, at: 0x1100, type: 'mmio_direct', expect: ok },
      { op: 'revoke', by: 'dom0', target: { kind: 'id', id: { kind: 'name', name: 'm1' } }, expect: ok },
      { op: 'revoke', by: 'dom0', target: { kind: 'range', domain: 'fe', gfn: 0x1100, count: 2 }, expect: ok },
      { op: 'steal', by: 'dom0', from: 'fe', gfn: 0x10, count: 1, expect: ok },
      { op: 'return', by: 'dom0', to: 'fe', gfn: 0x200, count: 1, at: 0x10, expect: ok },
      { op: 'read', domain: 'fe', gfn: 0, offset: 8, width: 8, expect: { kind: 'fault' } },
      { op: 'read', domain: 'fe', gfn: 0, offset: 0, width: 4, expect: { kind: 'value', value: 16n } },
      { op: 'write', domain: 'fe', gfn: 0x10, offset: 4088, width: 8, value: 0xffffffffffffffffn, expect: ok },
      { op: 'hypercall_copy', domain: 'fe', gfn: 0x10, dir: 'from_guest', bytes: 4096, expect: ok },
      { op: 'hypercall_copy', domain: 'fe', gfn: 0x10, dir: 'to_guest', bytes: 100, expect: { kind: 'errno', name: 'EFAULT', errno: 14 } },
      { op: 'dma_read', domain: 'fe', gfn: 0x10, offset: 4, expect: { kind: 'iommu_fault' } },
      { op: 'dma_write', domain: 'fe', gfn: 0x10, offset: 0, value: 0xfe, expect: ok },
      { op: 'iomem_permit', by: 'dom0', domain: 'fe', start: 0x80000, count: 16, allow: false, expect: ok },
      {
        op: 'ioreq_server', by: 'dom0', for: 'fe', ranges: [{ start: 0x1000, count: 16 }, { start: 0x2000, count: 1 }],
        fault_policy: 'remap', id: 's', expect: ok,
      },
      // A u64 start, as the domctl's first_mfn (2^64 − 1 is the nearest double, 2^64).
      { op: 'iomem_permit', by: 'peer', domain: 'fe', start: 2 ** 64, count: 2, allow: true, expect: ok },
      { op: 'current_reservation', domain: 'fe', expect: { kind: 'value', value: 256n } },
      { op: 'maximum_reservation', domain: 'dom0', of: 'fe', expect: { kind: 'errno', name: 'EPERM', errno: 1 } },
      { op: 'set_mem_type', by: 'dom0', domain: 'fe', gfn: 0x10, count: 2, type: 'ram_ro', expect: ok },
      { op: 'set_ioreq_server_state', by: 'dom0', for: 'fe', id: { kind: 'name', name: 's' }, enabled: true, expect: ok },
      { op: 'on_hook', hook: 'ioreq.wait', steps: [{ op: 'ioreq_answer', by: 'dom0', domain: 'fe', state: 3, data: 7, expect: ok, line: 40 }] },
      { op: 'read', domain: 'fe', gfn: 0x1000, offset: 0, width: 4, expect: ok },
      { op: 'revoke', by: 'dom0', target: { kind: 'range', domid: 9, gfn: 0x1100, count: 1 }, expect: ok },
      { op: 'crash', domain: 'peer', expect: { kind: 'ioreq' } },
      { op: 'destroy', domain: 'peer', expect: ok },
      { op: 'check', checks: ['invariants', 'frames_conserved', 'no_leaks'] },
    ]);
    // Every op of the vocabulary is covered above (ioreq_answer inside its on_hook), except `concurrently` (below).
    const ops = got.flatMap((s) => (s.op === 'on_hook' ? [s.op, ...s.steps.map((x) => x.op)] : [s.op]));
    expect(new Set([...ops, 'concurrently'])).toEqual(new Set(STEP_OPS));
    expect(got.map((s) => s.line)).toEqual(Array.from({ length: got.length }, (_, i) => 8 + i));
  });

  it('parses concurrently blocks with their own lines and handle scopes', () => {
    const got = steps(`  - grant: { domain: fe, ref: 8, to: peer, gfn: 0x10 }
  - concurrently:
      repeat: 500
      threads:
        - - map_grant: { domain: peer, from: fe, ref: 8, at: 0x300, handle: h }
          - unmap_grant: { domain: peer, handle: h }
        - - end_grant: { domain: fe, ref: 8, expect: EBUSY }
  - unmap_grant: { domain: peer, handle: h, expect: GNTST_bad_handle }
`);
    const block = got[1];
    if (block?.op !== 'concurrently') throw new Error('expected a concurrently step');
    expect(block.repeat).toBe(500);
    expect(block.line).toBe(9);
    expect(block.threads.map((t) => t.map((s) => [s.op, s.line]))).toEqual([
      [['map_grant', 12], ['unmap_grant', 13]],
      [['end_grant', 14]],
    ]);
    expect(got[2]?.line).toBe(15);
    const defaults = steps('  - concurrently:\n      threads: [[{ check: invariants }]]\n');
    expect(defaults[0]).toMatchObject({ op: 'concurrently', repeat: 1 });
  });

  it('rejects a handle used in a sibling thread before the block ends', () => {
    expect(
      errorOf(`  - concurrently:
      threads:
        - - map_grant: { domain: peer, from: fe, ref: 8, at: 0x300, handle: h }
        - - unmap_grant: { domain: peer, handle: h }
`),
    ).toBe('s.yaml:11:50: steps[0].concurrently.threads[1][0].unmap_grant.handle: handle `h` is not defined by an earlier step');
  });

  it('reports step errors at the offending value', () => {
    expect(errorOf('  - steal: { by: dom0, from: fee, gfn: 0x10 }\n')).toBe(
      's.yaml:8:30: steps[0].steal.from: unknown domain `fee`; domains are: dom0, fe, peer; did you mean `fe`?',
    );
    expect(errorOf('  - read: { domain: fe, gfn: 0, value: 1, expect: 1 }\n')).toContain('give the expected value as `value` or `expect`, not both');
    expect(errorOf('  - read: { domain: fe, gfn: 0, width: 1, expect: 256 }\n')).toContain('steps[0].read.expect: value 0x100 does not fit in 1 byte');
    expect(errorOf('  - write: { domain: fe, gfn: 0, width: 8, value: 0x1ffffffffffffffff }\n')).toContain('does not fit in 64 bits');
    expect(errorOf('  - revoke: { by: dom0 }\n')).toContain('revoke needs `id`');
    expect(errorOf('  - revoke: { by: dom0, id: 3, domain: fe, gfn: 1 }\n')).toContain('give either `id` or');
    expect(errorOf('  - map: { by: dom0, to: fe, gfn: 1, offset: 2, at: 9 }\n')).toContain('`offset` goes with `bar`');
    expect(errorOf('  - dma_read: { domain: peer, gfn: 0 }\n')).toContain('steps[0].dma_read.domain: `peer` has no passthrough device to do DMA');
    expect(errorOf('  - dma_write: { domain: fe, gfn: 0, offset: 2, value: 1 }\n')).toContain('offset 2 is not a multiple of the access width 4');
    expect(errorOf('  - {}\n')).toContain('empty step');
    expect(errorOf('  - check: []\n')).toContain('empty check list');
  });
});

describe('parseExpect', () => {
  it.each([
    ['OK', { kind: 'ok' }],
    ['FAULT', { kind: 'fault' }],
    ['IOREQ', { kind: 'ioreq' }],
    ['IOMMU_FAULT', { kind: 'iommu_fault' }],
    ['EPERM', { kind: 'errno', name: 'EPERM', errno: 1 }],
    ['EOPNOTSUPP', { kind: 'errno', name: 'EOPNOTSUPP', errno: 95 }],
    ['GNTST_okay', { kind: 'gntst', name: 'GNTST_okay', status: 0 }],
    ['GNTST_eagain', { kind: 'gntst', name: 'GNTST_eagain', status: -12 }],
    [0xfeedfacen, { kind: 'value', value: 0xfeedfacen }],
    [7, { kind: 'value', value: 7n }],
    ['0x10', { kind: 'value', value: 16n }],
  ] as const)('%s', (input, want) => {
    expect(parseExpect(input)).toEqual({ ok: true, value: want });
  });

  it('knows every errno name of the ABI', () => {
    for (const n of ['EPERM', 'ENOENT', 'ESRCH', 'E2BIG', 'EAGAIN', 'ENOMEM', 'EACCES', 'EFAULT', 'EBUSY', 'EEXIST', 'EINVAL', 'ENOSPC', 'ERANGE', 'EOPNOTSUPP']) {
      expect(parseExpect(n).ok).toBe(true);
    }
  });

  it.each([
    ['ok', 'did you mean `OK`?'],
    ['EBSY', 'did you mean `EBUSY`?'],
    ['GNTST_bad_gnref', 'did you mean `GNTST_bad_gntref`?'],
    [-16n, 'unknown expect -16'],
    [[1], 'unknown expect a list'],
  ] as const)('rejects %s', (input, message) => {
    const r = parseExpect(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(message);
  });
});

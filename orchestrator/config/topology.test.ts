import { fileURLToPath } from 'node:url';
import { DESIGN_ATTACKS } from '../../domains/gpu/protocol.js';
import { describe, expect, it } from 'vitest';
import { isInputError } from './errors.js';
import { ATTACKS, loadTopology, parseTopology, type Topology } from './topology.js';

/** A topology in the shape docs/formats.md §2 documents (the original contract's example). */
const GPU_DESKTOP = `name: gpu-desktop
seed: 42                    # optional; printed either way, so any run can be replayed
duration: 10s               # optional; ms, s, m
host:
  frames: 65536             # RAM frames; or ram: 256MiB
  page_size: 4096           # optional
  pcpus: 2                  # pCPUs the vCPUs are scheduled on (default auto: one per core; os: the OS schedules them)
transport: auto             # auto | redis | ring   (auto: redis if reachable, else ring)
domains:
  - name: dom0
    role: backend           # backend | frontend
    memory: 32MiB           # or frames: N; max_pages defaults to the same
    vcpus: 2
    devices:
      - { kind: virtio-gpu, name: gpu0, bar: 16MiB }
  - name: guest1
    role: frontend
    backend: dom0
    memory: 16MiB
    vcpus: 2
    workload: { kind: render, buffers: 16, buffer_pages: 8 }
  - name: evil
    role: frontend
    backend: dom0
    workload: { kind: adversary, attacks: [grant-then-steal, hypercall-on-mapped] }
`;

function errorOf(text: string): string {
  try {
    parseTopology(text, 't.yaml');
  } catch (e) {
    if (isInputError(e)) return e.toString();
    throw e;
  }
  throw new Error('expected an InputError');
}

describe('parseTopology', () => {
  it('normalizes the docs/formats.md example', () => {
    const t = parseTopology(GPU_DESKTOP, 'gpu-desktop.yaml');
    const want: Topology = {
      name: 'gpu-desktop',
      seed: 42,
      duration_ms: 10_000,
      host: { frames: 65536, page_size_bytes: 4096, pcpus: 2 },
      transport: 'auto',
      transitive_revoke: true,
      domains: [
        {
          name: 'dom0', domid: 0, role: 'backend', memory_pages: 8192, max_pages: 8192, vcpus: 2,
          devices: [{ kind: 'virtio-gpu', name: 'gpu0', bar_pages: 4096, evictions_per_s: 20 }], workload: { kind: 'idle' }, privileged: true,
          paddr_bits: 36,
        },
        {
          name: 'guest1', domid: 1, role: 'frontend', backend: 'dom0', memory_pages: 4096, max_pages: 4096, vcpus: 2,
          devices: [], workload: { kind: 'render', buffers: 16, buffer_pages: 8, fault_policy: 'remap' }, privileged: false,
          paddr_bits: 36,
        },
        {
          name: 'evil', domid: 2, role: 'frontend', backend: 'dom0', memory_pages: 1024, max_pages: 1024, vcpus: 1,
          devices: [], workload: { kind: 'adversary', attacks: ['grant-then-steal', 'hypercall-on-mapped'], dormant: false, fault_policy: 'remap' }, privileged: false,
          paddr_bits: 36,
        },
      ],
    };
    expect(t).toEqual(want);
  });

  it('loads examples/two-guests.yaml', () => {
    const file = fileURLToPath(new URL('../../examples/two-guests.yaml', import.meta.url));
    const t = loadTopology(file);
    expect(t.name).toBe('two-guests');
    expect(t.host).toEqual({ frames: 16384, page_size_bytes: 4096, pcpus: 'auto' });
    expect(t.domains.map((d) => [d.name, d.domid, d.role, d.vcpus, d.memory_pages, d.privileged])).toEqual([
      ['dom0', 0, 'backend', 2, 2048, true],
      ['guest1', 1, 'frontend', 2, 2048, false],
      ['guest2', 2, 'frontend', 2, 2048, false],
    ]);
    expect(t.domains[1]?.workload).toEqual({ kind: 'grant-ping', peer: 'guest2', pages: 4 });
    expect(t.domains[2]?.workload).toEqual({ kind: 'grant-ping', peer: 'guest1', pages: 4 });
    expect(t.domains[1]?.backend).toBe('dom0');
  });

  it('fills defaults for a minimal topology', () => {
    const t = parseTopology('domains:\n  - name: dom0\n  - name: fe\n', 'dir/minimal.yml');
    expect(t).toEqual({
      name: 'minimal',
      host: { frames: 1024 + 1024 + 1024, page_size_bytes: 4096, pcpus: 'auto' },
      transport: 'auto',
      transitive_revoke: true,
      domains: [
        { name: 'dom0', domid: 0, role: 'backend', memory_pages: 1024, max_pages: 1024, vcpus: 1, devices: [], workload: { kind: 'idle' }, privileged: true, paddr_bits: 36 },
        {
          name: 'fe', domid: 1, role: 'frontend', memory_pages: 1024, max_pages: 1024, vcpus: 1, devices: [],
          workload: { kind: 'grant-ping', peer: 'dom0', pages: 1 }, privileged: false,
          paddr_bits: 36,
        },
      ],
    } satisfies Topology);
    expect('seed' in t).toBe(false);
    expect('duration_ms' in t).toBe(false);
    expect('backend' in (t.domains[1] ?? {})).toBe(false);
  });

  it('converts sizes with the host page size', () => {
    const t = parseTopology(
      `host: { ram: 1MiB, page_size: 1KiB, pcpus: 4 }
domains:
  - { name: dom0, frames: 64, max_frames: 128 }
  - { name: fe, memory: 64K, max_memory: "0x20000", backend: dom0, workload: { kind: idle } }
duration: 1m30s
transport: ring
`,
      't.yaml',
    );
    expect(t.host).toEqual({ frames: 1024, page_size_bytes: 1024, pcpus: 4 });
    expect(t.duration_ms).toBe(90_000);
    expect(t.transport).toBe('ring');
    expect(t.domains.map((d) => [d.memory_pages, d.max_pages])).toEqual([[64, 128], [64, 128]]);
  });

  it('design: absent means the primitives (no key), a registered design is kept, an unknown one is an error at its place', () => {
    const dom = 'domains:\n  - { name: dom0 }\n';
    expect('design' in parseTopology(dom, 't.yaml')).toBe(false);
    expect(parseTopology(`design: primitives\n${dom}`, 't.yaml').design).toBe('primitives');
    expect(errorOf(`design: primitive\n${dom}`)).toMatch(/^t\.yaml:1:9: .*unknown design `primitive`.*did you mean `primitives`.*expected one of: primitives, grants, pinned-userptr/s);
    const fe = (w: string): string => `design: grants\ndomains:\n  - { name: dom0 }\n  - { name: fe, backend: dom0, workload: ${w} }\n`;
    expect(parseTopology(fe('{ kind: grant-ping }'), 't.yaml').design).toBe('grants');
    // The GPU workloads run on every design (domains/gpu/sharing.ts); the compositor chain's nested Map is the primitives' only.
    expect(parseTopology(fe('{ kind: render }'), 't.yaml').domains[1]?.workload.kind).toBe('render');
    expect(parseTopology(fe('{ kind: adversary }'), 't.yaml').domains[1]?.workload).toMatchObject({ kind: 'adversary', attacks: DESIGN_ATTACKS['grants'] });
    const chain = 'design: lending\ndomains:\n  - { name: dom0, role: backend }\n  - { name: r, backend: dom0, workload: { kind: render, share_with: v } }\n  - { name: v, backend: r, workload: { kind: viewer } }\n';
    expect(errorOf(chain)).toMatch(/^t\.yaml:4:\d+: .*domains\[1\]\.workload\.share_with.*nested Map, which design `lending` does not have/s);
    expect(parseTopology(fe('{ kind: render }').replace('grants', 'primitives'), 't.yaml').domains[1]?.workload.kind).toBe('render');
    expect(errorOf(`design: 3\n${dom}`)).toMatch(/^t\.yaml:1:9: .*expected a design \(primitives, grants, pinned-userptr, lending\)/s);
  });

  it('host.pcpus: auto (the default), os (no pCPU scheduler) or 1…64; 0 is not a spelling of os', () => {
    const host = (v: string): unknown => parseTopology(`host: { pcpus: ${v} }\ndomains:\n  - { name: dom0 }\n`, 't.yaml').host.pcpus;
    expect([host('auto'), host('os'), host('1'), host('64')]).toEqual(['auto', 'os', 1, 64]);
    for (const bad of ['0', '65', 'none', '1.5']) expect(errorOf(`host: { pcpus: ${bad} }\ndomains:\n  - { name: dom0 }\n`)).toMatch(/pcpus.*expected auto \(one pCPU per core\), os \(the OS schedules the vCPU threads\) or an integer 1…64/s);
  });

  it('picks grant-ping peers: another grant-ping domain, else the backend', () => {
    const t = parseTopology(
      `domains:
  - { name: dom0 }
  - { name: a, backend: dom0 }
  - { name: b, backend: dom0 }
  - { name: c, backend: dom0, workload: { kind: grant-ping, pages: 2 } }
  - { name: solo, backend: dom0, workload: { kind: compute-svm, buffers: 2, buffer_pages: 4 } }
`,
      't.yaml',
    );
    expect(t.domains.map((d) => d.workload)).toEqual([
      { kind: 'idle' },
      { kind: 'grant-ping', peer: 'b', pages: 1 },
      { kind: 'grant-ping', peer: 'c', pages: 1 },
      { kind: 'grant-ping', peer: 'a', pages: 2 },
      { kind: 'compute-svm', buffers: 2, buffer_pages: 4, fault_policy: 'remap' },
    ]);
    const lone = parseTopology('domains:\n  - { name: dom0 }\n  - { name: fe, backend: dom0 }\n  - { name: x, workload: { kind: idle } }\n', 't.yaml');
    expect(lone.domains[1]?.workload).toEqual({ kind: 'grant-ping', peer: 'dom0', pages: 1 });
  });

  it('defaults workload parameters and adversary attacks', () => {
    const t = parseTopology(
      'domains:\n  - { name: dom0 }\n  - { name: r, backend: dom0, workload: { kind: render } }\n  - { name: e, workload: { kind: adversary } }\n',
      't.yaml',
    );
    expect(t.domains[1]?.workload).toEqual({ kind: 'render', buffers: 16, buffer_pages: 8, fault_policy: 'remap' });
    // Absent: every attack of docs/semantics.md §7 (the 13 against the primitives), not the 3 against the other designs.
    expect(t.domains[2]?.workload).toEqual({ kind: 'adversary', attacks: ATTACKS.slice(0, 13), dormant: false, fault_policy: 'remap' });
    expect(ATTACKS).toHaveLength(16);
  });

  it('accepts an explicit domid equal to the list position and explicit roles', () => {
    const t = parseTopology('domains:\n  - { name: dom0, domid: 0, role: backend }\n  - { name: dm, domid: 1, role: backend }\n  - { name: fe, backend: dm }\n', 't.yaml');
    expect(t.domains.map((d) => [d.domid, d.role, d.privileged])).toEqual([[0, 'backend', true], [1, 'backend', false], [2, 'frontend', false]]);
  });

  it('accepts a compositor chain: a frontend served by a frontend, render share_with, a viewer', () => {
    const t = loadTopology(fileURLToPath(new URL('../../examples/compositor.yaml', import.meta.url)));
    expect(t.domains.map((d) => [d.name, d.role, d.backend])).toEqual([['dom0', 'backend', undefined], ['compositor', 'frontend', 'dom0'], ['viewer', 'frontend', 'compositor']]);
    expect(t.domains[1]?.workload).toEqual({ kind: 'render', buffers: 8, buffer_pages: 8, fault_policy: 'remap', share_with: 'viewer' });
    expect(t.domains[2]?.workload).toEqual({ kind: 'viewer' });
    // A chain of frontends that never reaches a backend is allowed; a loop is not.
    expect(parseTopology('domains:\n  - { name: dom0 }\n  - { name: a }\n  - { name: b, backend: a }\n', 't.yaml').domains[2]?.backend).toBe('a');
    expect(errorOf('domains:\n  - { name: dom0 }\n  - { name: a, backend: c }\n  - { name: b, backend: a }\n  - { name: c, backend: b }\n')).toContain('backends loop: a → c → b → a');
  });

  it('max_grant_frames, max_maptrack_frames: a domain\'s grant limits (Xen\'s grant_table_init: 1…64 and 0…1024; absent: Xen\'s defaults)', () => {
    const t = parseTopology('domains:\n  - { name: dom0, max_maptrack_frames: 0 }\n  - { name: g, backend: dom0, max_grant_frames: 1 }\n', 't.yaml');
    expect(t.domains.map((d) => [d.max_grant_frames, d.max_maptrack_frames])).toEqual([[undefined, 0], [1, undefined]]);
    expect(errorOf('domains:\n  - { name: dom0, max_grant_frames: 0 }\n')).toContain('domains[0].max_grant_frames: must be at least 1, got 0');
    expect(errorOf('domains:\n  - { name: dom0, max_maptrack_frames: 1025 }\n')).toContain('domains[0].max_maptrack_frames: must be at most 1024, got 1025');
  });

  it('missing_page: zero, the lender\'s other answer to a fault it has no page for, under design lending only', () => {
    const dev = (d: string): string => `design: ${d}\ndomains:\n  - { name: dom0, devices: [{ kind: virtio-gpu, name: gpu0, bar: 1MiB, missing_page: zero }] }\n`;
    expect(parseTopology(dev('lending'), 't.yaml').domains[0]?.devices[0]?.missing_page).toBe('zero');
    expect(errorOf(dev('primitives'))).toContain('domains[0].devices[0].missing_page: a zero page for a missing page is the lender\'s answer');
  });

  it('passthrough: a device passed through to a domain, its IOMMU on tables of its own or on the EPT (xl.cfg passthrough=)', () => {
    const t = parseTopology('domains:\n  - { name: dom0 }\n  - { name: g, backend: dom0, passthrough: share_pt }\n', 't.yaml');
    expect(t.domains.map((d) => d.passthrough)).toEqual([undefined, 'share_pt']);
    expect(errorOf('domains:\n  - { name: dom0, passthrough: enabled }\n')).toContain('domains[0].passthrough');
  });

  it('paddr_bits: a domain\'s guest physical width, 32…48, default 36 (Xen\'s hap_paddr_bits); its RAM must fit', () => {
    const t = parseTopology('domains:\n  - { name: dom0 }\n  - { name: g, backend: dom0, paddr_bits: 40 }\n', 't.yaml');
    expect(t.domains.map((d) => d.paddr_bits)).toEqual([36, 40]);
    expect(errorOf('domains:\n  - { name: dom0, paddr_bits: 50 }\n')).toBe('t.yaml:2:31: domains[0].paddr_bits: must be at most 48, got 50');
    expect(errorOf('domains:\n  - { name: dom0, paddr_bits: 31 }\n')).toContain('domains[0].paddr_bits: must be at least 32, got 31');
    expect(errorOf('domains:\n  - { name: dom0, max_memory: 5GiB, paddr_bits: 32 }\n')).toContain('domains[0].paddr_bits: 1310720 pages of RAM do not fit in a 32-bit guest physical space (1048576 gfns)');
  });

  it('a GPU backend\'s RAM holds its device model\'s blob pool for every GPU frontend, or the topology is refused at the backend\'s memory', () => {
    const topo = (mem: string, design = 'primitives', kind = 'render'): string =>
      `design: ${design}\ndomains:\n  - { name: dom0, role: backend, memory: ${mem}, vcpus: 2, devices: [{ kind: virtio-gpu, name: gpu0, bar: 1MiB }] }\n  - { name: a, backend: dom0 }\n  - { name: b, backend: dom0, workload: { kind: ${kind} } }\n`;
    // Frontend b (domid 2): render blobs are its resources 0…15, pages 64 + (2 × 32 + 16) × 8 = 704.
    expect(errorOf(topo('2MiB'))).toMatch(/^t\.yaml:3:\d+: .*domains\[0\]\.memory.*`dom0` has 512 pages of RAM, but its device model keeps the blob pool of GPU frontend `b` \(domid 2\) in pages 64…703: give it at least 704 pages/s);
    expect(parseTopology(topo('2816KiB'), 't.yaml').domains[2]?.workload.kind).toBe('render');
    // The adversary uses every resource of its slot: 64 + 3 × 32 × 8 = 832.
    expect(errorOf(topo('2816KiB', 'primitives', 'adversary'))).toMatch(/give it at least 832 pages/);
    // A compute-svm guest Steals its own RAM under the primitives (no pool); lending lends it from the pool.
    expect(parseTopology(topo('1MiB', 'primitives', 'compute-svm'), 't.yaml').domains[2]?.workload.kind).toBe('compute-svm');
    expect(errorOf(topo('1MiB', 'lending', 'compute-svm'))).toMatch(/give it at least 832 pages/);
    // Grants and pins share the frontend's own pages: no pool.
    expect(parseTopology(topo('1MiB', 'grants'), 't.yaml').domains[2]?.workload.kind).toBe('render');
  });

  it('reports errors with file:line:col and key path', () => {
    expect(errorOf('domains:\n  - name: dom0\n  - name: guest1\n    backend: dom1\n')).toBe(
      't.yaml:4:14: domains[1].backend: unknown backend `dom1`; domains are: dom0, guest1; did you mean `dom0`?',
    );
    expect(errorOf('domains:\n  - name: dom0\n    memroy: 4MiB\n')).toBe('t.yaml:3:5: domains[0].memroy: unknown key `memroy`; did you mean `memory`?');
    expect(errorOf('domains:\n  - { name: dom0, memory: 4MiB }\n  - { name: g, memory: 8MiB, backend: dom0 }\nhost: { frames: 2000 }\n')).toBe(
      't.yaml:4:17: host.frames: domains need 3072 frames of memory (dom0 1024, g 2048) but the host has 2000',
    );
  });
});

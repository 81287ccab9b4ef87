/**
 * Topologies (docs/formats.md §2): the zod schema of what users write,
 * and the normalization to a fully typed, fully defaulted `Topology` with
 * every unit converted to pages. Cross-field errors point at the YAML text
 * that is wrong.
 *
 * Defaults and decisions:
 * - `role`: the first domain (dom0) is a backend, the others frontends. dom0
 *   must be a backend: it is privileged, and a privileged frontend would
 *   bypass the checks the simulation exists to test.
 * - `memory: <size>` or `frames: N`, not both; neither means 4MiB. The size
 *   must be a whole number of host pages. `max_memory`/`max_frames` default
 *   to the memory and may not be below it.
 * - `host.frames` or `host.ram`, not both; neither means Σ domain memory +
 *   1024 free frames. `page_size`: a power of two in [256, 65536], default
 *   4096. `pcpus`: auto (the default: one pCPU per core of the machine
 *   that runs it), os (no pCPU scheduler: the OS schedules every vCPU
 *   thread) or 1…64; resolved to a number where the host is built
 *   (orchestrator/up/run-flags.ts pcpusOf).
 * - Device names are unique across the host (scenario `map` steps name a BAR
 *   by its device name).
 * - Workloads: frontends default to `grant-ping`, backends to `idle`.
 *   `render`/`compute-svm` run on frontends that have a backend; `adversary`
 *   never runs in dom0. A grant-ping without `peer` pings the next domain in
 *   list order (wrapping) that also runs grant-ping, else its backend, else
 *   the next domain.
 * - A frontend's `backend` is a backend, or another frontend that serves it
 *   (a compositor chain, docs/gpu.md §12): that frontend may re-Map what it
 *   received into it (nested Map). Not itself, no loops. The GPU workloads
 *   need a backend-role domain (the device model runs there).
 * - `design`: the memory-sharing design the machine runs (docs/designs.md),
 *   one of the designs registered in hypervisor/designs/index.ts; absent
 *   means the seed's primitives (xen/design.ts DEFAULT_DESIGN), and the
 *   normalized topology then has no `design` key, so a topology written
 *   before designs existed normalizes as it did. The GPU workloads (`render`,
 *   `compute-svm`, `adversary`) share buffers through the design's adapter
 *   (domains/gpu/sharing.ts); the compositor chain (`viewer`, `render`
 *   with `share_with`) re-Maps what it received, a nested Map only the
 *   primitives have, so under another design it is refused here rather
 *   than run to a stream of EOPNOTSUPP. `idle` and `grant-ping` need no design.
 * - `render` `share_with: <viewer>` names a frontend whose backend is the
 *   render domain; `viewer` runs on a frontend whose backend runs `render`
 *   with `share_with` naming it.
 */
import { DESIGN_NAMES } from '../../hypervisor/designs/index.js';
import { DEFAULT_DESIGN } from '../../hypervisor/xen/design.js';
import { PASSTHROUGH_MODES, type PassthroughMode } from '../../hypervisor/layout/domains.js';
import { gpuPoolPagesFor, MAX_BLOB_PAGES, POOL_GFN, RES_PER_FE } from '../../domains/gpu/protocol.js';
import { DEFAULT_EVICTIONS_PER_S, DESIGN_ATTACKS, MISSING_PAGE, type MissingPage } from '../../domains/gpu/protocol.js';
import { z } from 'zod';
import { bool, duration, ident, int, list, obj, oneOf, pcpus, size, str, tagged, type PcpuChoice } from './fields.js';
import { didYouMean, errorAt, readYamlFile, parseYaml, validate, type Path, type YamlSource } from './load.js';
import { bytesToPages, formatBytes } from './units.js';
import {
  DEFAULT_BUFFER_PAGES, DEFAULT_BUFFERS, DEFAULT_DOMAIN_MEMORY_BYTES, DEFAULT_FREE_FRAMES, DEFAULT_GRANT_PING_PAGES,
  DEFAULT_PAGE_SIZE_BYTES, DEFAULT_VCPUS, MAX_BUFFER_PAGES, MAX_BUFFERS, MAX_DOMAINS, MAX_HOST_FRAMES,
  MAX_HOST_RAM_BYTES, MAX_PAGE_SIZE_BYTES, MAX_PCPUS, MAX_SEED, MAX_VCPUS, MAX_VCPUS_PER_DOMAIN, MIN_PAGE_SIZE_BYTES,
  MAX_GRANT_PING_PAGES, P2M_DEFAULT_PADDR_BITS, P2M_MAX_PADDR_BITS, P2M_MIN_PADDR_BITS, XEN_MAX_GRANT_FRAMES, XEN_MAX_MAPTRACK_FRAMES,
} from './limits.js';

// ---------------------------------------------------------------- public types

export const TRANSPORTS = ['auto', 'redis', 'ring'] as const;
export type TransportChoice = (typeof TRANSPORTS)[number];

export const ROLES = ['backend', 'frontend'] as const;
export type Role = (typeof ROLES)[number];

/** docs/semantics.md §7, in its order. */
export const ATTACKS = [
  'grant-then-steal',
  'hypercall-on-mapped',
  'balloon-mapped',
  'flip-grant',
  'exhaust-grants',
  'exhaust-maptrack',
  'exhaust-ioreq',
  'race-revoke',
  'nested-map-evasion',
  'die-while-mapped',
  'fault-storm',
  'memop-probe',
  'steal-reuse',
  // Against the other designs' sharing (domains/gpu/protocol.ts DESIGN_ATTACKS):
  'grant-mapped',
  'end-while-mapped',
  'balloon-pinned',
] as const;
export type AttackName = (typeof ATTACKS)[number];
const DESIGN_ONLY_ATTACKS: ReadonlySet<string> = new Set(['grant-mapped', 'end-while-mapped', 'balloon-pinned']);

export const WORKLOAD_KINDS = ['idle', 'render', 'compute-svm', 'adversary', 'grant-ping', 'viewer'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];
/**
 * The GPU workloads share through each design's adapter (domains/gpu/sharing.ts); only the compositor chain
 * (`viewer`, a `render` with `share_with`) needs the primitives' nested Map.
 */
export const PRIMITIVES_ONLY_WORKLOADS = ['viewer'] as const satisfies readonly WorkloadKind[];

export const DEVICE_KINDS = ['virtio-gpu'] as const;
export type DeviceKind = (typeof DEVICE_KINDS)[number];

export type WorkloadSpec =
  | { readonly kind: 'idle' }
  /**
   * `share_with`: a frontend this one serves; blobs' pages are re-Mapped into it (nested Map, docs/gpu.md §12).
   * `resident`: its buffers stay shared between rounds, `buffer_pages` each (a compositor's window surfaces).
   */
  | { readonly kind: 'render'; readonly buffers: number; readonly buffer_pages: number; readonly fault_policy: FaultPolicyName; readonly share_with?: string; readonly resident?: true }
  | { readonly kind: 'compute-svm'; readonly buffers: number; readonly buffer_pages: number; readonly fault_policy: FaultPolicyName }
  /** `dormant`: attacks only once chaos `adversary-on` switches it on (xenstore key ADVERSARY_ON). */
  | { readonly kind: 'adversary'; readonly attacks: readonly AttackName[]; readonly dormant: boolean; readonly fault_policy: FaultPolicyName }
  /** Write/read own memory, grant `pages` pages to `peer`, which maps, reads and unmaps them. */
  | { readonly kind: 'grant-ping'; readonly peer: string; readonly pages: number }
  /** Reads the blob pages its backend (a `render` frontend with `share_with` naming it) re-Maps into it. */
  | { readonly kind: 'viewer' };

export interface DeviceSpec {
  readonly kind: DeviceKind;
  readonly name: string;
  readonly bar_pages: number;
  /** dom0's MMU notifier: RAM-backed blobs evicted per second (memory pressure at rest). */
  readonly evictions_per_s: number;
  /** Lending: the device model's answer to a FAULT it has no page for — an injected fault (absent), or a zero page. */
  readonly missing_page?: MissingPage;
}

export interface DomainSpec {
  readonly name: string;
  /** List order; dom0 = 0. */
  readonly domid: number;
  readonly role: Role;
  /** Name of the backend domain serving this frontend. */
  readonly backend?: string;
  /** Populated as ram_rw at gfns 0…memory_pages−1 at creation. */
  readonly memory_pages: number;
  readonly max_pages: number;
  readonly vcpus: number;
  readonly devices: readonly DeviceSpec[];
  readonly workload: WorkloadSpec;
  /** True for domid 0 only. */
  readonly privileged: boolean;
  /** Guest physical address width: gfns 0 … 2^(paddr_bits − 12) − 1 exist (hypervisor/layout/p2m.ts). */
  readonly paddr_bits: number;
  /** Grant frames its table may have (Xen's max_grant_frames; absent: 64, opt_max_grant_frames). */
  readonly max_grant_frames?: number;
  /** Maptrack frames it may grow (max_maptrack_frames; absent: 1024): grant maps held at once ≤ × 256. */
  readonly max_maptrack_frames?: number;
  /** A device passed through to it (xl.cfg passthrough=): how its IOMMU translates (hypervisor/xen/iommu.ts). */
  readonly passthrough?: PassthroughMode;
}

export interface HostSpec {
  readonly frames: number;
  readonly page_size_bytes: number;
  /** How the vCPUs are scheduled (auto: on one pCPU per core; os: by the OS). */
  readonly pcpus: PcpuChoice;
}

export interface Topology {
  readonly name: string;
  readonly seed?: number;
  readonly duration_ms?: number;
  readonly host: HostSpec;
  readonly transport: TransportChoice;
  /** Nested Map (a frontend re-Mapping what it received) allowed, and revoked transitively; off: it is -EPERM. */
  readonly transitive_revoke: boolean;
  /** The memory-sharing design (docs/designs.md); absent: the primitives. */
  readonly design?: string;
  readonly domains: readonly DomainSpec[];
}

// ---------------------------------------------------------------- schema (what users write)

const kindOf = <const K extends string>(k: K) => oneOf([k] as const, 'kind');
const buffers = () => int({ min: 1, max: MAX_BUFFERS }).default(DEFAULT_BUFFERS);
const bufferPages = () => int({ min: 1, max: MAX_BUFFER_PAGES }).default(DEFAULT_BUFFER_PAGES);
/** What the device model answers an access to a revoked range of this guest (docs/semantics.md §5). */
/** Render and userptr buffers per guest: half the device's resources each. */
const GPU_BUFFERS_PER_GUEST = RES_PER_FE / 2;
/** Command slots (and resource shares) per virtio-gpu guest. */
const GPU_MAX_VCPUS = 4;
export const FAULT_POLICIES = ['remap', 'fail', 'none'] as const;
export type FaultPolicyName = (typeof FAULT_POLICIES)[number];
const faultPolicy = () => oneOf(FAULT_POLICIES, 'fault policy').default('remap');

export const workloadSchema = tagged(
  'kind',
  {
    idle: obj({ kind: kindOf('idle') }),
    render: obj({ kind: kindOf('render'), buffers: buffers(), buffer_pages: bufferPages(), fault_policy: faultPolicy(), share_with: ident().optional(), resident: bool().optional() }),
    'compute-svm': obj({ kind: kindOf('compute-svm'), buffers: buffers(), buffer_pages: bufferPages(), fault_policy: faultPolicy() }),
    adversary: obj({
      kind: kindOf('adversary'),
      attacks: list(oneOf(ATTACKS, 'attack'), { min: 1 }).optional(),
      start: oneOf(['running', 'dormant'] as const, 'start').default('running'),
      fault_policy: faultPolicy(),
    }),
    'grant-ping': obj({
      kind: kindOf('grant-ping'),
      peer: ident().optional(),
      pages: int({ min: 1, max: MAX_GRANT_PING_PAGES }).default(DEFAULT_GRANT_PING_PAGES),
    }),
    viewer: obj({ kind: kindOf('viewer') }),
  },
  'workload kind',
);

export const deviceSchema = obj({
  kind: oneOf(DEVICE_KINDS, 'device kind'),
  name: ident(),
  bar: size(),
  evictions_per_s: int({ min: 0, max: 100_000 }).default(DEFAULT_EVICTIONS_PER_S),
  missing_page: oneOf(MISSING_PAGE, 'missing_page').optional(),
});

export const domainSchema = obj({
  name: ident(),
  /** Optional, for readability; must equal the list position. */
  domid: int({ max: MAX_DOMAINS - 1 }).optional(),
  role: oneOf(ROLES, 'role').optional(),
  backend: ident().optional(),
  memory: size().optional(),
  frames: int({ min: 1, max: MAX_HOST_FRAMES }).optional(),
  max_memory: size().optional(),
  max_frames: int({ min: 1, max: MAX_HOST_FRAMES }).optional(),
  vcpus: int({ min: 1, max: MAX_VCPUS_PER_DOMAIN }).optional(),
  paddr_bits: int({ min: P2M_MIN_PADDR_BITS, max: P2M_MAX_PADDR_BITS }).optional(),
  max_grant_frames: int({ min: 1, max: XEN_MAX_GRANT_FRAMES }).optional(),
  max_maptrack_frames: int({ min: 0, max: XEN_MAX_MAPTRACK_FRAMES }).optional(),
  passthrough: oneOf(PASSTHROUGH_MODES, 'passthrough').optional(),
  devices: list(deviceSchema).optional(),
  workload: workloadSchema.optional(),
});

export const hostSchema = obj({
  frames: int({ min: 1, max: MAX_HOST_FRAMES }).optional(),
  ram: size().optional(),
  page_size: size().optional(),
  pcpus: pcpus(MAX_PCPUS).optional(),
});

export const topologySchema = obj({
  name: str().optional(),
  seed: int({ max: MAX_SEED }).optional(),
  duration: duration().optional(),
  host: hostSchema.optional(),
  transport: oneOf(TRANSPORTS, 'transport').optional(),
  transitive_revoke: bool().optional(),
  design: oneOf(DESIGN_NAMES, 'design').optional(),
  domains: list(domainSchema, { min: 1, max: MAX_DOMAINS }),
});

export type RawTopology = z.output<typeof topologySchema>;
type RawDomain = z.output<typeof domainSchema>;
type RawWorkload = z.output<typeof workloadSchema>;

// ---------------------------------------------------------------- normalization

export interface NormalizeOptions {
  /** Where the topology sits in its document: [] for a topology file, ['topology'] in a scenario. */
  readonly path: Path;
  /** Scenarios ignore workloads and duration (steps drive the domains). */
  readonly forScenario: boolean;
  /** Name to use when the topology has none. */
  readonly defaultName: string;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Cross-field checks and defaults; `raw` is what topologySchema produced for `src` at `opts.path`. */
export function normalizeTopology(src: YamlSource, raw: RawTopology, opts: NormalizeOptions): Topology {
  const at = (...p: (string | number)[]): Path => [...opts.path, ...p];
  const fail = (p: Path, msg: string): never => {
    throw errorAt(src, p, msg);
  };

  // Host page size first: every size converts with it.
  const pageSize = raw.host?.page_size ?? DEFAULT_PAGE_SIZE_BYTES;
  if (!isPowerOfTwo(pageSize)) fail(at('host', 'page_size'), `page size ${pageSize} is not a power of two`);
  if (pageSize < MIN_PAGE_SIZE_BYTES || pageSize > MAX_PAGE_SIZE_BYTES) {
    fail(at('host', 'page_size'), `page size must be between ${MIN_PAGE_SIZE_BYTES} and ${MAX_PAGE_SIZE_BYTES} bytes, got ${pageSize}`);
  }
  const toPages = (bytes: number, p: Path): number => {
    const r = bytesToPages(bytes, pageSize);
    if (!r.ok) return fail(p, r.error);
    return r.value;
  };

  const names = raw.domains.map((d) => d.name);
  const byName = new Map<string, { index: number; raw: RawDomain; role: Role }>();
  const roles: Role[] = raw.domains.map((d, i) => d.role ?? (i === 0 ? 'backend' : 'frontend'));
  raw.domains.forEach((d, i) => {
    const prev = byName.get(d.name);
    if (prev !== undefined) fail(at('domains', i, 'name'), `duplicate domain name \`${d.name}\` (also domains[${prev.index}])`);
    byName.set(d.name, { index: i, raw: d, role: roles[i] ?? 'frontend' });
    if (d.domid !== undefined && d.domid !== i) {
      fail(at('domains', i, 'domid'), `domids follow list order: \`${d.name}\` is domain ${i}, so its domid is ${i}, not ${d.domid}`);
    }
  });
  if (roles[0] !== 'backend') {
    fail(at('domains', 0, 'role'), `the first domain is dom0 (domid 0, privileged) and must be a backend`);
  }

  // Memory, vCPUs, devices.
  let totalVcpus = 0;
  const deviceOwners = new Map<string, string>();
  const sized = raw.domains.map((d, i) => {
    const p = (...k: (string | number)[]) => at('domains', i, ...k);
    if (d.memory !== undefined && d.frames !== undefined) fail(p('frames'), 'give either `memory` or `frames`, not both');
    const memoryPages =
      d.frames ?? (d.memory !== undefined ? toPages(d.memory, p('memory')) : DEFAULT_DOMAIN_MEMORY_BYTES / pageSize);
    if (d.max_memory !== undefined && d.max_frames !== undefined) fail(p('max_frames'), 'give either `max_memory` or `max_frames`, not both');
    const maxKey = d.max_frames !== undefined ? 'max_frames' : 'max_memory';
    const maxPages = d.max_frames ?? (d.max_memory !== undefined ? toPages(d.max_memory, p('max_memory')) : memoryPages);
    if (maxPages < memoryPages) {
      fail(p(maxKey), `${maxKey} (${maxPages} pages) is below the domain's memory (${memoryPages} pages)`);
    }
    const paddrBits = d.paddr_bits ?? P2M_DEFAULT_PADDR_BITS;
    if (maxPages > 2 ** (paddrBits - 12)) fail(p(d.paddr_bits !== undefined ? 'paddr_bits' : maxKey), `${maxPages} pages of RAM do not fit in a ${paddrBits}-bit guest physical space (${2 ** (paddrBits - 12)} gfns)`);
    const vcpus = d.vcpus ?? DEFAULT_VCPUS;
    totalVcpus += vcpus;
    if (totalVcpus > MAX_VCPUS) fail(p('vcpus'), `the host runs at most ${MAX_VCPUS} vCPUs in all; this domain brings it to ${totalVcpus}`);
    const devices: DeviceSpec[] = (d.devices ?? []).map((dev, j) => {
      const owner = deviceOwners.get(dev.name);
      if (owner !== undefined) fail(p('devices', j, 'name'), `duplicate device name \`${dev.name}\` (also on \`${owner}\`)`);
      deviceOwners.set(dev.name, d.name);
      // The RFC's lender userspace answers a fault it has no page for with a zero page: lent memory's, so lending's alone.
      if (dev.missing_page === 'zero' && raw.design !== 'lending') fail(p('devices', j, 'missing_page'), `a zero page for a missing page is the lender's answer (design \`lending\`, docs/designs.md §2 rule 6); this topology runs \`${raw.design ?? DEFAULT_DESIGN}\``);
      return { kind: dev.kind, name: dev.name, bar_pages: toPages(dev.bar, p('devices', j, 'bar')), evictions_per_s: dev.evictions_per_s, ...(dev.missing_page !== undefined ? { missing_page: dev.missing_page } : {}) };
    });
    return { memoryPages, maxPages, vcpus, devices, paddrBits };
  });

  // Backends.
  raw.domains.forEach((d, i) => {
    if (d.backend === undefined) return;
    const p = at('domains', i, 'backend');
    if (roles[i] === 'backend') fail(p, `\`${d.name}\` is a backend; only frontends name a \`backend\``);
    if (d.backend === d.name) fail(p, `\`${d.name}\` cannot be its own backend`);
    const b = byName.get(d.backend);
    if (b === undefined) fail(p, `unknown backend \`${d.backend}\`; domains are: ${names.join(', ')}${didYouMean(d.backend, names.filter((n) => n !== d.name))}`);
    // A frontend serving a frontend (a compositor chain): follow the chain up to a backend; a loop never gets there.
    const chain = [d.name];
    for (let cur = b; cur !== undefined && cur.role === 'frontend'; cur = cur.raw.backend !== undefined ? byName.get(cur.raw.backend) : undefined) {
      if (chain.includes(cur.raw.name)) fail(p, `backends loop: ${[...chain, cur.raw.name].join(' → ')}`);
      chain.push(cur.raw.name);
    }
  });

  // Workloads.
  const explicitKind = (d: RawDomain, i: number): WorkloadKind => d.workload?.kind ?? (roles[i] === 'backend' ? 'idle' : 'grant-ping');
  const workloads: WorkloadSpec[] = raw.domains.map((d, i): WorkloadSpec => {
    if (opts.forScenario) return { kind: 'idle' };
    return normalizeWorkload(d, i, d.workload);
  });

  /** The virtio-GPU device's limits: 16 resources of each kind per guest, blobs of at most MAX_BLOB_PAGES pages. */
  function gpuBuffers(i: number, w: { buffers: number; buffer_pages: number }): void {
    const p = (...k: (string | number)[]) => at('domains', i, 'workload', ...k);
    if (w.buffer_pages > MAX_BLOB_PAGES) fail(p('buffer_pages'), `the virtio-gpu device's buffers are at most ${MAX_BLOB_PAGES} pages, got ${w.buffer_pages}`);
    if (w.buffers > GPU_BUFFERS_PER_GUEST) fail(p('buffers'), `the virtio-gpu device has ${GPU_BUFFERS_PER_GUEST} buffers of each kind per guest, got ${w.buffers}`);
  }

  /**
   * The backend's RAM holds the device model's blob pool for frontend i
   * (domains/gpu/protocol.ts POOL_GFN) under the designs whose blobs are
   * its memory: an undersized backend made Maps fail quietly (the guests
   * only counted them) and the run checked less.
   */
  function gpuPool(i: number, backend: string, kind: 'render' | 'compute-svm' | 'adversary'): void {
    const design = raw.design ?? DEFAULT_DESIGN;
    if (design !== 'primitives' && design !== 'lending') return;
    // Under the primitives a userptr buffer is the frontend's RAM, Stolen (no pool); lending lends it from the pool.
    if (kind === 'compute-svm' && design === 'primitives') return;
    const b = byName.get(backend);
    if (b === undefined || b.role !== 'backend') return; // refused elsewhere
    const have = sized[b.index]?.memoryPages ?? 0;
    // Render blobs are the resources below GPU_BUFFERS_PER_GUEST; userptr buffers and the adversary's blobs above.
    const need = gpuPoolPagesFor(i, kind === 'render' ? GPU_BUFFERS_PER_GUEST : RES_PER_FE);
    if (have >= need) return;
    const key = b.raw.frames !== undefined ? 'frames' : 'memory';
    fail(at('domains', b.index, key), `\`${backend}\` has ${have} pages of RAM, but its device model keeps the blob pool of GPU frontend \`${raw.domains[i]!.name}\` (domid ${i}) in pages ${POOL_GFN}…${need - 1}: give it at least ${need} pages (${formatBytes(need * pageSize)})`);
  }

  function normalizeWorkload(d: RawDomain, i: number, w: RawWorkload | undefined): WorkloadSpec {
    const p = (...k: (string | number)[]) => at('domains', i, 'workload', ...k);
    const kind = explicitKind(d, i);
    const memoryPages = sized[i]?.memoryPages ?? 0;
    if ((kind === 'render' || kind === 'compute-svm')) {
      if (roles[i] === 'backend') fail(p('kind'), `workload \`${kind}\` runs on a frontend; \`${d.name}\` is a backend`);
      if (d.backend === undefined) fail(p('kind'), `workload \`${kind}\` needs a backend: add \`backend: <name>\` to \`${d.name}\``);
    }
    if ((kind === 'render' || kind === 'compute-svm' || kind === 'adversary') && d.backend !== undefined && byName.get(d.backend)?.role === 'frontend') {
      fail(at('domains', i, 'backend'), `workload \`${kind}\` needs a GPU backend (its device model), and \`${d.backend}\` is a frontend`);
    }
    if (kind === 'adversary' && i === 0) fail(p('kind'), 'dom0 is trusted and cannot run the `adversary` workload');
    if ((kind === 'render' || kind === 'compute-svm' || kind === 'adversary') && d.backend !== undefined) gpuPool(i, d.backend, kind);
    const vcpus = sized[i]?.vcpus ?? 1;
    if ((kind === 'render' || kind === 'compute-svm' || kind === 'adversary') && vcpus > GPU_MAX_VCPUS) {
      fail(at('domains', i, 'vcpus'), `a virtio-gpu guest (\`${kind}\`) has at most ${GPU_MAX_VCPUS} vCPUs (one command slot each), got ${vcpus}`);
    }
    if (w === undefined) {
      return kind === 'idle' ? { kind: 'idle' } : { kind: 'grant-ping', peer: defaultPeer(i), pages: DEFAULT_GRANT_PING_PAGES };
    }
    switch (w.kind) {
      case 'idle':
        return { kind: 'idle' };
      case 'render': {
        gpuBuffers(i, w);
        const base = { kind: 'render', buffers: w.buffers, buffer_pages: w.buffer_pages, fault_policy: w.fault_policy, ...(w.resident === true ? { resident: true as const } : {}) } as const;
        if (w.share_with === undefined) return base;
        if (w.resident === true) fail(p('resident'), 'a compositor (`share_with`) passes each buffer on and takes it back in its round: its buffers are not resident');
        const v = byName.get(w.share_with);
        if (v === undefined) {
          fail(p('share_with'), `unknown domain \`${w.share_with}\`; domains are: ${names.join(', ')}${didYouMean(w.share_with, names.filter((n) => n !== d.name))}`);
        } else if (v.raw.name === d.name) fail(p('share_with'), `\`${d.name}\` cannot share with itself`);
        else if (v.role !== 'frontend' || v.raw.backend !== d.name) {
          fail(p('share_with'), `\`${w.share_with}\` must be a frontend that \`${d.name}\` serves: give it \`backend: ${d.name}\``);
        }
        return { ...base, share_with: w.share_with };
      }
      case 'viewer': {
        const b = d.backend === undefined ? undefined : byName.get(d.backend);
        const bw = b?.raw.workload;
        if (b === undefined || bw?.kind !== 'render' || bw.share_with !== d.name) {
          fail(p('kind'), `workload \`viewer\` reads what its backend shares: \`${d.name}\` needs \`backend: <a render domain>\` whose workload has \`share_with: ${d.name}\``);
        }
        return { kind: 'viewer' };
      }
      case 'compute-svm':
        // Steal takes the frontend's own RAM, so the buffers must fit in it.
        if (w.buffers * w.buffer_pages > memoryPages) {
          fail(p('buffers'), `${w.buffers} buffers × ${w.buffer_pages} pages exceed \`${d.name}\`'s ${memoryPages} pages of memory`);
        }
        gpuBuffers(i, w);
        return { kind: 'compute-svm', buffers: w.buffers, buffer_pages: w.buffer_pages, fault_policy: w.fault_policy };
      case 'adversary': {
        // Absent: every attack against the primitives (§7's), the design's own against another design.
        const attacks = w.attacks ?? (raw.design === undefined || raw.design === DEFAULT_DESIGN ? ATTACKS.filter((a) => !DESIGN_ONLY_ATTACKS.has(a)) : (DESIGN_ATTACKS[raw.design] as readonly AttackName[]));
        const seen = new Set<string>();
        attacks.forEach((a, j) => {
          if (seen.has(a)) fail(p('attacks', j), `attack \`${a}\` is listed twice`);
          seen.add(a);
        });
        return { kind: 'adversary', attacks, dormant: w.start === 'dormant', fault_policy: w.fault_policy };
      }
      case 'grant-ping': {
        if (w.pages > memoryPages) fail(p('pages'), `\`${d.name}\` has only ${memoryPages} pages to grant, not ${w.pages}`);
        if (w.peer === undefined) return { kind: 'grant-ping', peer: defaultPeer(i), pages: w.pages };
        if (w.peer === d.name) fail(p('peer'), 'a grant-ping peer must be another domain');
        if (!byName.has(w.peer)) {
          fail(p('peer'), `unknown peer \`${w.peer}\`; domains are: ${names.join(', ')}${didYouMean(w.peer, names.filter((n) => n !== d.name))}`);
        }
        return { kind: 'grant-ping', peer: w.peer, pages: w.pages };
      }
    }
  }

  function defaultPeer(i: number): string {
    const n = raw.domains.length;
    const others = Array.from({ length: n - 1 }, (_, k) => (i + 1 + k) % n);
    const pick =
      others.find((j) => raw.domains[j] !== undefined && explicitKind(raw.domains[j], j) === 'grant-ping') ??
      others.find((j) => raw.domains[j]?.name === raw.domains[i]?.backend) ??
      others[0];
    const peer = pick === undefined ? undefined : raw.domains[pick]?.name;
    if (peer === undefined) return fail(at('domains', i), 'the grant-ping workload needs a peer domain, and there is no other domain');
    return peer;
  }

  // Host RAM.
  const totalMemory = sized.reduce((s, d) => s + d.memoryPages, 0);
  const host = raw.host;
  if (host?.frames !== undefined && host.ram !== undefined) fail(at('host', 'ram'), 'give either `frames` or `ram`, not both');
  const framesKey = host?.ram !== undefined ? 'ram' : 'frames';
  if (host?.ram !== undefined && host.ram > MAX_HOST_RAM_BYTES) fail(at('host', 'ram'), `host RAM is at most ${formatBytes(MAX_HOST_RAM_BYTES)}`);
  const frames = host?.frames ?? (host?.ram !== undefined ? toPages(host.ram, at('host', 'ram')) : totalMemory + DEFAULT_FREE_FRAMES);
  if (frames > MAX_HOST_FRAMES) fail(at('host', framesKey), `host RAM is at most ${MAX_HOST_FRAMES} frames, got ${frames}`);
  if (frames * pageSize > MAX_HOST_RAM_BYTES) fail(at('host', framesKey), `host RAM is at most ${formatBytes(MAX_HOST_RAM_BYTES)}, got ${formatBytes(frames * pageSize)}`);
  if (totalMemory > frames) {
    const parts = raw.domains.map((d, i) => `${d.name} ${sized[i]?.memoryPages ?? 0}`).join(', ');
    fail(at('host', framesKey), `domains need ${totalMemory} frames of memory (${parts}) but the host has ${frames}`);
  }

  if (!opts.forScenario && raw.duration === 0) fail(at('duration'), 'must be positive, got 0');

  // Workloads a design other than the primitives can run (see the header).
  if (raw.design !== undefined && raw.design !== DEFAULT_DESIGN) {
    workloads.forEach((w, i) => {
      if (!(PRIMITIVES_ONLY_WORKLOADS as readonly string[]).includes(w.kind) && (w.kind !== 'render' || w['share_with'] === undefined)) return;
      fail(at('domains', i, 'workload', w.kind === 'render' ? 'share_with' : 'kind'), `the compositor chain (\`viewer\`, \`share_with\`) re-Maps what it received — a nested Map, which design \`${raw.design}\` does not have (docs/designs.md)`);
    });
  }

  const domains: DomainSpec[] = raw.domains.map((d, i) => {
    const s = sized[i];
    const workload = workloads[i];
    if (s === undefined || workload === undefined) throw new Error('topology: domain tables out of step');
    return {
      name: d.name,
      domid: i,
      role: roles[i] ?? 'frontend',
      ...(d.backend !== undefined ? { backend: d.backend } : {}),
      memory_pages: s.memoryPages,
      max_pages: s.maxPages,
      vcpus: s.vcpus,
      devices: s.devices,
      workload,
      privileged: i === 0,
      paddr_bits: s.paddrBits,
      ...(d.max_grant_frames !== undefined ? { max_grant_frames: d.max_grant_frames } : {}),
      ...(d.max_maptrack_frames !== undefined ? { max_maptrack_frames: d.max_maptrack_frames } : {}),
      ...(d.passthrough !== undefined ? { passthrough: d.passthrough } : {}),
    };
  });

  return {
    name: raw.name ?? opts.defaultName,
    ...(raw.seed !== undefined ? { seed: raw.seed } : {}),
    ...(raw.duration !== undefined && !opts.forScenario ? { duration_ms: raw.duration } : {}),
    host: { frames, page_size_bytes: pageSize, pcpus: host?.pcpus ?? 'auto' },
    transport: raw.transport ?? 'auto',
    transitive_revoke: raw.transitive_revoke ?? true,
    ...(raw.design !== undefined ? { design: raw.design } : {}),
    domains,
  };
}

/** `examples/two-guests.yaml` → `two-guests`. */
export function baseName(file: string): string {
  const b = file.split(/[\\/]/).pop() ?? file;
  return b.replace(/\.ya?ml$/i, '');
}

function fromSource(src: YamlSource): Topology {
  const raw = validate(src, topologySchema);
  return normalizeTopology(src, raw, { path: [], forScenario: false, defaultName: baseName(src.file) });
}

/** Parse topology text; throws InputError naming `file:line:col` of the first problem. */
export function parseTopology(text: string, file: string): Topology {
  return fromSource(parseYaml(text, file));
}

/** Read and parse a topology file; throws InputError. */
export function loadTopology(file: string): Topology {
  return fromSource(readYamlFile(file));
}

/**
 * The one door between the Xen core and a memory-sharing design: the
 * seed's Map / Revoke / Steal / Return today (hypervisor/designs/primitives/),
 * the designs it is compared with beside it (hypervisor/designs/<name>/).
 *
 * The core calls a design at the places a Xen patch for it would touch, and
 * nowhere else:
 *  - the dm_op dispatch (xen/arch/x86/hvm/dm.c dm_op): `map`, `revoke`,
 *    `steal`, `return` — an operation a design does not have is
 *    -EOPNOTSUPP, as dm_op answers an unknown op;
 *  - the fault path (xen/common/ioreq.c ioreq_server_select): `faultServer`,
 *    which IOREQ server an access to a revoked gfn goes to;
 *  - the foreign-map path (p2m_add_foreign, after get_page_from_gfn):
 *    `foreignMapRefused`, a frame no foreign map may take (lent memory);
 *  - the IOMMU's own tables (ept_set_entry's iommu_legacy_map with
 *    p2m_get_iommu_flags): `iommuExcludes`, an entry they leave out (lent
 *    memory stays out of the borrower's IOMMU);
 *  - domain teardown (domain_relinquish_resources): `domainDying`;
 *  - the checker (docs/semantics.md §6): `check` (invariant 4 against the
 *    design's own records) and `liveRecords` (invariant 8: none left).
 *
 * A design keeps its shared state in one region of its own (`regionBytes`,
 * allocated with the machine, `Machine.sabs.design`) and takes the global
 * `registry` lock (GLOBAL_LOCK.REGISTRY, rank 20 in docs/locks.md) to
 * change it. Every thread that runs hypervisor code registers the designs
 * once (hypervisor/designs/index.ts) before it builds a Machine; the one a
 * machine runs is named in its config (`MachineConfig.design`).
 */
import { EOPNOTSUPP } from '../public/errno.js';
import type { P2mType } from '../public/types.js';
import { type Machine, type MachineConfig, setDesignRegionSizer } from './machine.js';

export type MapSource = { kind: 'ram'; gfn: number } | { kind: 'bar'; mfn: number };
export interface MapArgs {
  fe: number;
  source: MapSource;
  count: number;
  at: number;
  type?: P2mType;
}
export type RevokeTarget = { id: number } | { fe: number; gfn: number; count: number };
export interface StealArgs {
  fe: number;
  gfn: number;
  count: number;
  into?: number;
}
export interface ReturnArgs {
  fe: number;
  /** The backend's gfn of the first stolen page. */
  gfn: number;
  count: number;
  /** The frontend gfn to return to (default: where each page was stolen from). */
  at?: number;
}
/** A range dm_op's result: all-or-nothing, naming the first page that failed. */
export interface DmOpResult {
  rc: number;
  /** First failing page, −1 for an argument error or success. */
  index: number;
  /** The mapping made (Map, Steal's implicit Map), 0 otherwise. */
  id: number;
}

export interface MemoryDesign {
  /** The name a topology or `MachineConfig.design` picks it by. */
  readonly name: string;
  /** Bytes of the design's shared region for a machine of this config. */
  regionBytes(config: MachineConfig): number;
  /**
   * The first bytes of the region that are its state; the rest is derived
   * from them (an index), which the simulator's state digest leaves out.
   * Default: all of it.
   */
  stateBytes?(config: MachineConfig): number;
  map(m: Machine, be: number, a: MapArgs): DmOpResult;
  /** Never fails for valid arguments (docs/semantics.md §4). */
  revoke(m: Machine, be: number, t: RevokeTarget): number;
  steal(m: Machine, be: number, a: StealArgs): DmOpResult;
  return(m: Machine, be: number, a: ReturnArgs): DmOpResult;
  /** Domain d is being destroyed, its vCPUs offline: undo what the design holds of it. */
  domainDying(m: Machine, d: number): void;
  /** The IOREQ server (index among d's) a FAULT on d's revoked `gfn` goes to, or −1 for none. */
  faultServer(m: Machine, d: number, gfn: number): number;
  /**
   * Whether a foreign map (privcmd, XENMAPSPACE_gmfn_foreign) of RAM frame `mfn` is refused whoever asks, dom0
   * included (lending's rule 3). Called under the source domain's p2m lock, with the frame referenced.
   */
  foreignMapRefused(m: Machine, mfn: number): boolean;
  /**
   * Whether d's IOMMU tables leave out its p2m entry `e`, which p2m_get_iommu_flags would map (lending's rule 4).
   * Asked only of an IOMMU with tables of its own (sync_pt, xen/iommu.ts): one walking the p2m itself sees what the
   * vCPUs see. Lock-free, at each DMA.
   */
  iommuExcludes(m: Machine, d: number, e: number): boolean;
  /** Invariant 4 against the design's records; records checks and violations in m.log. */
  check(m: Machine): void;
  /** Records still live (0 after every domain was destroyed: invariant 8). */
  liveRecords(m: Machine): number;
}

export const DEFAULT_DESIGN = 'primitives';

const NOT_AN_OP: DmOpResult = { rc: -EOPNOTSUPP, index: -1, id: 0 };

/**
 * A design that adds nothing to Xen as it ships (grants, pinned userptr):
 * no dm_op of its own (-EOPNOTSUPP, as dm_op answers an op it does not
 * know), no records, no FAULT routing; the core's own checks are all there is.
 */
export function shippedXenDesign(name: string): MemoryDesign {
  return {
    name,
    // No shared records; a SharedArrayBuffer of 0 bytes is a valid, empty region.
    regionBytes: () => 0,
    map: () => NOT_AN_OP,
    revoke: () => -EOPNOTSUPP,
    steal: () => NOT_AN_OP,
    return: () => NOT_AN_OP,
    domainDying: () => {},
    faultServer: () => -1,
    foreignMapRefused: () => false,
    iommuExcludes: () => false,
    check: () => {},
    liveRecords: () => 0,
  };
}

const designs = new Map<string, MemoryDesign>();

/** Called once per thread per design, by hypervisor/designs/index.ts. */
export function registerDesign(d: MemoryDesign): void {
  const had = designs.get(d.name);
  if (had !== undefined && had !== d) throw new Error(`two designs are called '${d.name}'`);
  designs.set(d.name, d);
}

export function designNamed(name: string): MemoryDesign {
  const d = designs.get(name);
  if (d === undefined) {
    const known = [...designs.keys()];
    throw new Error(known.length === 0 ? `no design registered in this thread (import hypervisor/designs/index.js first)` : `no design '${name}' (known: ${known.join(', ')})`);
  }
  return d;
}

/** The design machine m runs. */
export function designOf(m: Machine): MemoryDesign {
  return designNamed(m.config.design ?? DEFAULT_DESIGN);
}

setDesignRegionSizer((config) => designNamed(config.design ?? DEFAULT_DESIGN).regionBytes(config));

/**
 * dom0's virtio-GPU backend: the device model (the IOREQ server, vCPU 0)
 * and the kernel part (vCPU 1): the MMU notifier that evicts blobs under
 * memory pressure by calling Revoke directly — never waiting for the device
 * model — and the simulated GPU engine that writes userptr (SVM) buffers.
 *
 * dom0-internal state both parts share lives in dom0's own RAM (pages 1–3),
 * updated with cmpxchg through dom0's MMU, like kernel data structures.
 */
import type { GuestCpu } from '../../hypervisor/public/guest.js';
import { XS_KEY, xsRead } from '../../hypervisor/public/xenstore.js';
import { FAULT_ANSWER, IOREQ_DIR, IOREQ_TYPE, type IoreqAnswer, type IoreqRequest, type IoreqServerEnd } from '../../hypervisor/public/ioreq.js';
import { domid, gfn, grantHandle, grantRef } from '../../hypervisor/public/types.js';
import type { GpuEnv, GpuFrontendEnv, Workload } from '../workload.js';
import { bump as count } from '../counters.js';
import { ioreqLoop } from '../ioreq-loop.js';
import { toolstack } from './toolstack.js';
import { ENOSPC, ESRCH } from '../../hypervisor/public/errno.js';
import { CHECK_WORDS, CMD, CMD_STATUS, CMD_WORDS, MAX_BLOB_PAGES, OP, pattern, POOL_GFN, REG_DOORBELL, REG_QUEUE, REG_STATUS, RES_PER_FE } from './protocol.js';
import { backendSharing, type BackendBuffer, type BackendSharing } from './sharing.js';

/** dom0 pages of the GPU backend: resource states, map ids, the engine's job slot; blob backing from POOL_GFN. */
const STATE_GFN = 1;
const MAPID_GFN = 2;
const JOB_GFN = 3;
/** Per frontend: the queue grant's handle + 1 and the dom0 gfn it is mapped at (a restarted device model takes them over). */
const QUEUE_TBL_GFN = 4;
/** Per resource, RES_WORDS words: its description, so a restarted device model knows every resource. */
const RES_TBL_GFN = 8;
const RES_WORDS = 16;
/** H0…: a grant map's handle per page (the grants design), + 1 (0: none). */
const RESF = { PAGES: 0, BAR: 1, BACKING: 2, AT: 3, INTO: 4, UPTR: 5, H0: 8 } as const;
if (RES_TBL_GFN + Math.ceil((112 * RES_PER_FE * RES_WORDS) / 1024) > POOL_GFN) throw new Error('resource table overlaps the blob pool');
/** A dom0 RAM page the toolstack tries to foreign-map (it must be refused). */
const TOOLSTACK_OWN_GFN = 5;
const RS = { FREE: 0, CREATED: 1, MAPPED: 2, EVICTING: 3, EVICTED: 4, UNMAPPED: 5, STOLEN: 6 } as const;
const JOB = { STATE: 0, INTO: 1, PAGES: 2, VALUE: 3 } as const;

interface Report {
  out: Record<string, number>;
  samples: Record<string, number[]>;
  /** Failed checks: an answer of the hypervisor that Xen (or the seed) would not give. */
  fails: number;
}
const bump = (r: Report, k: string, n = 1): void => count(r.out, k, n);

/** Index of (frontend, resource) in the shared tables. */
const slotOf = (fe: number, res: number): number => fe * RES_PER_FE + res;
const wordAt = (i: number): [number, number] => [Math.floor(i / 1024), (i % 1024) * 4];

class Shared {
  constructor(readonly cpu: GuestCpu) {}
  state(i: number): number {
    const [p, o] = wordAt(i);
    return this.cpu.read32(gfn(STATE_GFN + p * 4), o);
  }
  cas(i: number, from: number, to: number): boolean {
    const [p, o] = wordAt(i);
    return this.cpu.cmpxchg32(gfn(STATE_GFN + p * 4), o, from, to) === from;
  }
  set(i: number, v: number): void {
    const [p, o] = wordAt(i);
    this.cpu.cmpxchg32(gfn(STATE_GFN + p * 4), o, this.state(i), v);
  }
  mapId(i: number): number {
    const [p, o] = wordAt(i);
    return this.cpu.read32(gfn(MAPID_GFN + p * 4), o);
  }
  setMapId(i: number, id: number): void {
    const [p, o] = wordAt(i);
    this.cpu.write32(gfn(MAPID_GFN + p * 4), o, id);
  }
}

/** A resource: a blob or a userptr buffer (userptr_gfn ≥ 0), as sharing.ts's BackendBuffer describes its fields. */
interface Resource {
  pages: number;
  bar: boolean;
  backing: number; // dom0 gfn (RAM) or BAR mfn, −1 for none (the frontend's own pages)
  at: number; // frontend gfn while mapped
  into: number; // dom0 gfn where dom0 reaches the frontend's pages (stolen, grant-mapped, pinned)
  userptr_gfn: number;
  handles: number[];
}

/**
 * The device model's tables live in dom0 RAM, not in the device model's
 * own memory: a device model that is killed and restarted finds every
 * resource and every queue mapping its predecessor made.
 */
class ResourceTable {
  constructor(
    readonly cpu: GuestCpu,
    readonly shared: Shared,
  ) {}
  private at(i: number, f: number): [number, number] {
    const w = i * RES_WORDS + f;
    return [RES_TBL_GFN + Math.floor(w / 1024), (w % 1024) * 4];
  }
  get(i: number): Resource | undefined {
    if (this.shared.state(i) === RS.FREE) return undefined;
    const rd = (f: number): number => {
      const [g, o] = this.at(i, f);
      return this.cpu.read32(gfn(g), o) | 0;
    };
    const pages = rd(RESF.PAGES);
    const handles: number[] = [];
    for (let p = 0; p < MAX_BLOB_PAGES; p++) {
      const h = rd(RESF.H0 + p);
      if (h !== 0) handles.push(h - 1);
    }
    return { pages, bar: rd(RESF.BAR) === 1, backing: rd(RESF.BACKING), at: rd(RESF.AT), into: rd(RESF.INTO), userptr_gfn: rd(RESF.UPTR), handles };
  }
  put(i: number, r: Resource): void {
    const wr = (f: number, v: number): void => {
      const [g, o] = this.at(i, f);
      this.cpu.write32(gfn(g), o, v);
    };
    wr(RESF.PAGES, r.pages);
    wr(RESF.BAR, r.bar ? 1 : 0);
    wr(RESF.BACKING, r.backing);
    wr(RESF.AT, r.at);
    wr(RESF.INTO, r.into);
    wr(RESF.UPTR, r.userptr_gfn);
    for (let p = 0; p < MAX_BLOB_PAGES; p++) wr(RESF.H0 + p, p < r.handles.length ? r.handles[p]! + 1 : 0);
  }
  /**
   * One field of resource i, read without building a Resource: the FAULT
   * path and the search for a free chunk look at every slot of a frontend,
   * and a Resource per slot was a fifth of what the simulator allocated.
   */
  field(i: number, f: number): number {
    const [g, o] = this.at(i, f);
    return this.cpu.read32(gfn(g), o) | 0;
  }
  /** Resources of a frontend, with their indices. */
  *of(fe: number): Generator<[number, Resource]> {
    for (let i = fe * RES_PER_FE; i < (fe + 1) * RES_PER_FE; i++) {
      const r = this.get(i);
      if (r !== undefined) yield [i, r];
    }
  }
}

class QueueTable {
  constructor(readonly cpu: GuestCpu) {}
  get(fe: number): { handle: number; at: number } | undefined {
    const h = this.cpu.read32(gfn(QUEUE_TBL_GFN), fe * 8) | 0;
    return h === 0 ? undefined : { handle: h - 1, at: this.cpu.read32(gfn(QUEUE_TBL_GFN), fe * 8 + 4) | 0 };
  }
  set(fe: number, q: { handle: number; at: number } | undefined): void {
    this.cpu.write32(gfn(QUEUE_TBL_GFN), fe * 8 + 4, q?.at ?? 0);
    this.cpu.write32(gfn(QUEUE_TBL_GFN), fe * 8, q === undefined ? 0 : q.handle + 1);
  }
}

/** A resource's fields as the design's adapter sees them (the map id lives in its own table). */
function bufferOf(shared: Shared, i: number, r: Resource): BackendBuffer {
  return { pages: r.pages, bar: r.bar, backing: r.backing, at: r.at, into: r.into, handles: r.handles, map_id: shared.mapId(i) };
}

/** Store back what the adapter changed. */
function keep(table: ResourceTable, shared: Shared, i: number, r: Resource, b: BackendBuffer): void {
  r.backing = b.backing;
  r.into = b.into;
  r.handles = b.handles;
  table.put(i, r);
  shared.setMapId(i, b.map_id);
}

/**
 * Where the frontends' pages are mapped into dom0 (stolen, grant-mapped,
 * pinned): a free chunk of MAX_BLOB_PAGES gfns between dom0's RAM and its
 * max_pages (the room its quota leaves), found from the resource table
 * itself so a restarted device model sees the same. A fixed place per
 * resource slot ran past dom0's p2m (into its vCPUs' mapping windows) once
 * a frontend's domid was 4 or more — found by `xgsim sim` on a topology
 * with seven domains.
 */
function freeChunkOf(gpu: GpuEnv, table: ResourceTable): number {
  const used = new Set<number>();
  for (const f of gpu.frontends) {
    for (let i = f.domid * RES_PER_FE; i < (f.domid + 1) * RES_PER_FE; i++) {
      if (table.shared.state(i) === RS.FREE) continue;
      const into = table.field(i, RESF.INTO);
      if (into >= 0) used.add(into);
    }
  }
  const chunks = Math.floor((gpu.backend_max_pages - gpu.backend_memory_pages) / MAX_BLOB_PAGES);
  for (let c = 0; c < chunks; c++) {
    const g = gpu.backend_memory_pages + c * MAX_BLOB_PAGES;
    if (!used.has(g)) return g;
  }
  return -1;
}

/**
 * The lender's pool (lending): a buffer's backing at POOL_GFN + slot × MAX_BLOB_PAGES,
 * and its other page half the pool further on, where an eviction migrates it; −1 where dom0's RAM ends first.
 */
function altBackingOf(gpu: GpuEnv, backing: number): number {
  const half = Math.floor((gpu.backend_memory_pages - POOL_GFN) / 2 / MAX_BLOB_PAGES) * MAX_BLOB_PAGES;
  if (backing < POOL_GFN || half <= 0) return -1;
  const alt = backing < POOL_GFN + half ? backing + half : backing - half;
  return alt >= POOL_GFN && alt + MAX_BLOB_PAGES <= gpu.backend_memory_pages ? alt : -1;
}

function sharingFor(cpu: GuestCpu, gpu: GpuEnv, report: Report, table: ResourceTable): BackendSharing {
  return backendSharing(gpu.design, {
    cpu,
    report,
    failed(what) {
      bump(report, `failed_${what}`);
      report.fails++;
    },
    freeChunk: () => freeChunkOf(gpu, table),
    altBacking: (backing) => altBackingOf(gpu, backing),
    zeroPages: gpu.design === 'lending' && gpu.frontends.some((f) => f.missing_page === 'zero'),
  });
}

export function deviceModel(cpu: GuestCpu, gpu: GpuEnv, report: Report, off: readonly string[] = []): Workload {
  // Behaviours a swarm seed left out (hypervisor/host/sim/swarm.ts).
  const returnWithMaps = !off.includes('return-with-maps');
  const end: IoreqServerEnd = cpu.ioreqServerEnd();
  const shared = new Shared(cpu);
  const table = new ResourceTable(cpu, shared);
  const queues = new QueueTable(cpu);
  const sharing = sharingFor(cpu, gpu, report, table);
  const primitives = sharing.design === 'primitives';
  const lat: number[] = (report.samples['revoke_us'] ??= []);
  const fes = new Map<number, GpuFrontendEnv>(gpu.frontends.map((f) => [f.domid, f]));
  // One vCPU, or the deterministic simulator's polled end (one thread: a
  // device model waiting for the kernel's engine would wait on an actor the
  // simulator cannot run beneath it): the device model runs GPU jobs itself.
  const inlineEngine = cpu.nr_vcpus < 2 || end.recvNow !== undefined;
  let started = false;
  /** A page of zeros, to clear a zero page with (missing_page: zero). */
  let zeros: Uint32Array | undefined;

  function start(): void {
    // Hand our servers' ioreqs to this device model (set_ioreq_server_state(enabled)).
    for (const f of gpu.frontends) cpu.hc.dm_set_ioreq_server_state(domid(f.domid), f.server, true);
    started = true;
  }

  function queueGfn(fe: number): number {
    return queues.get(fe)?.at ?? -1;
  }

  function mmio(req: IoreqRequest, fe: GpuFrontendEnv): IoreqAnswer {
    // STATUS reads 1 only once this frontend's queue is mapped: the driver
    // retries its set-up until then (its first REG_QUEUE write may have met
    // the server before this device model enabled it, and been dropped).
    if (req.dir === IOREQ_DIR.READ) return { data: req.offset === REG_STATUS ? (queues.get(fe.domid) !== undefined ? 1 : 0) : 0xffffffff, fault: 0 };
    if (req.offset === REG_QUEUE) {
      const old = queues.get(fe.domid);
      if (old !== undefined) {
        cpu.hc.gnttab_unmap_grant_ref(grantHandle(old.handle));
        queues.set(fe.domid, undefined);
      }
      const host = queueMapGfn(fe.domid);
      const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(fe.domid), ref: grantRef(req.data), host_gfn: gfn(host), readonly: false });
      if (r.status === 0) queues.set(fe.domid, { handle: r.handle as number, at: host });
      else bump(report, 'queue_map_fail');
      return { data: 0, fault: 0 };
    }
    if (req.offset === REG_DOORBELL) {
      execute(fe, req.data);
      return { data: 0, fault: 0 };
    }
    return { data: 0, fault: 0 };
  }

  function queueMapGfn(fe: number): number {
    // dom0's vCPU 0 mapping window (above its max_pages), one page per frontend.
    return Math.max(gpu.backend_memory_pages, gpu.backend_max_pages) + fe;
  }

  function execute(fe: GpuFrontendEnv, k: number): void {
    const q = queueGfn(fe.domid);
    if (q < 0 || k < 0 || k >= 4096 / 4 / CMD_WORDS) return;
    const base = k * CMD_WORDS * 4;
    const rd = (f: number): number => cpu.read32(gfn(q), base + f * 4);
    const wr = (f: number, v: number): void => cpu.write32(gfn(q), base + f * 4, v);
    if (rd(CMD.STATUS) !== CMD_STATUS.PENDING) return;
    const op = rd(CMD.OP);
    const r = rd(CMD.RES);
    const a0 = rd(CMD.A0);
    const a1 = rd(CMD.A1);
    cpu.work('gpu_command');
    const rc = r < RES_PER_FE ? command(fe, op, r, a0, a1) : -22;
    wr(CMD.RESULT, rc);
    wr(CMD.STATUS, rc >= 0 ? CMD_STATUS.DONE : CMD_STATUS.ERROR);
    bump(report, 'commands');
  }

  function command(fe: GpuFrontendEnv, op: number, r: number, a0: number, a1: number): number {
    const i = slotOf(fe.domid, r);
    const cur = table.get(i);
    switch (op) {
      case OP.CREATE_BLOB: {
        if (cur !== undefined || a0 < 1 || a0 > MAX_BLOB_PAGES) return -16;
        // Only a Map puts a BAR in a guest's p2m; grants and pins share the frontend's own pages.
        const bar = primitives && a1 === 1 && gpu.bar !== undefined && gpu.bar.nr_pages >= MAX_BLOB_PAGES;
        const backing = bar ? gpu.bar!.base_mfn + ((i * MAX_BLOB_PAGES) % (gpu.bar!.nr_pages - MAX_BLOB_PAGES + 1)) : ownBacking(i);
        table.put(i, { pages: a0, bar, backing, at: -1, into: -1, userptr_gfn: -1, handles: [] });
        shared.set(i, RS.CREATED);
        bump(report, bar ? 'blobs_bar' : 'blobs_ram');
        return 0;
      }
      case OP.MAP_BLOB: {
        if (cur === undefined || cur.userptr_gfn >= 0 || shared.state(i) !== RS.CREATED) return -22;
        const rc = mapBlob(fe, i, cur, a0);
        return rc;
      }
      case OP.UNMAP_BLOB:
        if (cur === undefined) return -22;
        unmapBlob(i);
        shared.set(i, RS.CREATED);
        return 0;
      case OP.CHECK_BLOB: {
        if (cur === undefined || cur.bar || shared.state(i) === RS.CREATED) return -22;
        const data = sharing.dataGfn(bufferOf(shared, i, cur));
        if (data < 0) return -22;
        let bad = 0;
        for (let p = 0; p < cur.pages; p++) for (let w = 0; w < CHECK_WORDS; w++) if ((cpu.read32(gfn(data + p), w * 4) | 0) !== pattern(a0, p, w)) bad++;
        if (bad > 0) bump(report, 'blob_check_mismatch');
        return bad;
      }
      case OP.DESTROY_BLOB:
        if (cur === undefined || cur.userptr_gfn >= 0) return -22;
        unmapBlob(i);
        shared.set(i, RS.FREE);
        return 0;
      case OP.CREATE_USERPTR:
        if (cur !== undefined || a1 < 1 || a1 > MAX_BLOB_PAGES) return -16;
        return primitives ? createUserptr(fe.domid, i, a0, a1) : shareUserptr(fe.domid, i, r, a0, a1);
      case OP.GPU_RUN:
        if (cur === undefined || cur.userptr_gfn < 0) return -22;
        // Not run (the engine stops with the host): EIO, so the guest does not check what was never written.
        return runGpu(i, cur.pages, a0) ? 0 : -5;
      case OP.RELEASE_USERPTR:
        if (cur === undefined || cur.userptr_gfn < 0) return -22;
        if (!primitives) return unshareUserptr(i);
        return releaseUserptr(fe.domid, i, cur, fe.window_gfn + r * MAX_BLOB_PAGES);
      case OP.DISCARD_USERPTR:
        if (cur === undefined || cur.userptr_gfn < 0) return -22;
        if (!primitives) return unshareUserptr(i);
        discardUserptr(fe.domid, i, cur);
        return 0;
      default:
        return -95;
    }
  }

  /** A failed check of the device model: an answer Xen (or the seed) would not give. */
  function failed(what: string): void {
    bump(report, `failed_${what}`);
    report.fails++;
  }

  /**
   * The frontend's quota (max_pages) moved by `delta` with a Steal or a
   * Return (the seed: "the frontend's quota goes down by the number of
   * pages stolen"). Only this device model steals from or returns to its
   * frontends, so nothing else moves it meanwhile; a frontend gone since
   * (ESRCH) is not judged.
   */
  function checkQuota(fe: number, before: number, delta: number): void {
    const after = cpu.hc.maximum_reservation(domid(fe));
    if (before >= 0 && after >= 0 && after !== before + delta) failed(`quota_moved_${after - before}_not_${delta}`);
  }

  function createUserptr(fe: number, i: number, at: number, pages: number): number {
    const into = freeChunkOf(gpu, table);
    if (into < 0) return -ENOSPC; // dom0 has no room for more stolen pages
    const before = cpu.hc.maximum_reservation(domid(fe));
    const st = cpu.hc.dm_steal(domid(fe), gfn(at), pages, gfn(into));
    if (st.rc !== 0) {
      bump(report, `steal_refused_${st.rc}_${st.index}`);
      return st.rc;
    }
    checkQuota(fe, before, -pages);
    table.put(i, { pages, bar: false, backing: -1, at: -1, into, userptr_gfn: at, handles: [] });
    shared.set(i, RS.STOLEN);
    return 0;
  }

  /** dom0's own memory behind resource i: its blob pool slot (the lender's pool under lending); none under grants and pins. */
  function ownBacking(i: number): number {
    return sharing.design === 'grants' || sharing.design === 'pinned-userptr' ? -1 : POOL_GFN + i * MAX_BLOB_PAGES;
  }

  /**
   * A userptr buffer under a design without Steal: dom0 lends memory at
   * the frontend's gfn (lending), or maps the frontend's own pages (grants,
   * pins). It is MAPPED like a blob, so dom0's memory pressure may evict it
   * where the design lets it.
   */
  function shareUserptr(fe: number, i: number, res: number, at: number, pages: number): number {
    const cur: Resource = { pages, bar: false, backing: ownBacking(i), at, into: -1, userptr_gfn: at, handles: [] };
    const b = bufferOf(shared, i, cur);
    const rc = sharing.share(fe, res, b);
    if (rc !== 0) {
      bump(report, `userptr_share_refused_${-rc}`);
      return rc;
    }
    keep(table, shared, i, cur, b);
    shared.set(i, RS.MAPPED);
    return 0;
  }

  function unshareUserptr(i: number): number {
    unmapBlob(i);
    shared.set(i, RS.FREE);
    return 0;
  }

  /**
   * Return the pages. Half the time the device model first showed the
   * guest its buffer through a Map of its own: the Steal's implicit Map
   * revoked, an explicit Map of the same frames at the same gfns instead;
   * Return revokes that one as it would the implicit one (a Map of this very
   * frame at the return gfn is no conflict). Return fails only for a
   * frontend that is no longer running (ESRCH): no reference but the Maps'
   * is ever taken on these frames here.
   */
  function releaseUserptr(fe: number, i: number, cur: Resource, spare_gfn: number): number {
    // Catalogue `return-with-maps` (docs/verification.md): half the time a
    // second outstanding Map of the stolen frames, into the frontend's blob
    // window at this resource's slot (nothing else maps there while the
    // resource is a userptr). Return must revoke it too (the seed:
    // "Outstanding Maps of them are revoked first"); one left live is on a
    // frame that is the frontend's RAM again (records_match_frames).
    if (returnWithMaps && cpu.random() < 0.5) {
      const mp = cpu.hc.dm_map(domid(fe), { kind: 'ram', gfn: gfn(cur.into) }, cur.pages, gfn(spare_gfn), 'mmio_direct');
      bump(report, mp.rc === 0 ? 'userptr_extra_maps' : `userptr_extra_map_refused_${mp.rc}`);
    }
    if (cpu.random() < 0.5) {
      const rv = cpu.hc.dm_revoke({ fe: domid(fe), gfn: gfn(cur.userptr_gfn), count: cur.pages });
      if (rv !== 0) failed(`revoke_implicit_map_got_${rv}`);
      const mp = cpu.hc.dm_map(domid(fe), { kind: 'ram', gfn: gfn(cur.into) }, cur.pages, gfn(cur.userptr_gfn), 'mmio_direct');
      bump(report, mp.rc === 0 ? 'userptr_remapped' : `userptr_remap_refused_${mp.rc}`);
    }
    const before = cpu.hc.maximum_reservation(domid(fe));
    const rt = cpu.hc.dm_return(domid(fe), gfn(cur.into), cur.pages, gfn(cur.userptr_gfn));
    if (rt.rc !== 0) {
      if (rt.rc !== -ESRCH) failed(`return_got_${rt.rc}`);
      return rt.rc;
    }
    checkQuota(fe, before, cur.pages);
    shared.set(i, RS.FREE);
    return 0;
  }

  /**
   * The guest will not take its buffer back (it unmapped it): the frames
   * stay dom0's, which frees them — the implicit Map revoked first, so the
   * guest reaches no freed frame. That Steal is over (the seed: a Steal "is
   * tied to the frame"); the place in dom0 is free for the next one.
   */
  function discardUserptr(fe: number, i: number, cur: Resource): void {
    const rv = cpu.hc.dm_revoke({ fe: domid(fe), gfn: gfn(cur.userptr_gfn), count: cur.pages });
    if (rv !== 0) failed(`discard_revoke_got_${rv}`);
    freeStolen(cur);
    shared.set(i, RS.FREE);
  }

  /** dom0 frees stolen frames it holds (balloons them out): every one is its RAM, so every extent is done. */
  function freeStolen(cur: Resource): void {
    const gfns = Array.from({ length: cur.pages }, (_, k) => gfn(cur.into + k));
    const done = cpu.hc.decrease_reservation(gfns);
    if (done !== cur.pages) failed(`free_stolen_done_${done}_of_${cur.pages}`);
  }

  /** Share resource i with the frontend at `at` (the design's share: Map, lend, grant map, pin). */
  function mapBlob(fe: GpuFrontendEnv, i: number, cur: Resource, at: number): number {
    cur.at = at;
    const b = bufferOf(shared, i, cur);
    const rc = sharing.share(fe.domid, i - fe.domid * RES_PER_FE, b);
    if (rc !== 0) return rc;
    keep(table, shared, i, cur, b);
    shared.set(i, RS.MAPPED);
    return 0;
  }

  /** Let go of a resource's sharing unless the MMU notifier already did (waits for an eviction in progress). */
  function unmapBlob(i: number): void {
    for (;;) {
      const st = shared.state(i);
      if (st === RS.MAPPED) {
        if (!shared.cas(i, RS.MAPPED, RS.UNMAPPED)) continue;
        const cur = table.get(i);
        if (cur === undefined) return;
        const b = bufferOf(shared, i, cur);
        const t0 = cpu.now_us();
        // The adapter checks the answer: Revoke of a mapping dom0 made "never fails for valid arguments" (the seed).
        sharing.unshare(Math.floor(i / RES_PER_FE), b);
        lat.push(cpu.now_us() - t0);
        keep(table, shared, i, cur, b);
        return;
      }
      if (st === RS.EVICTING) continue; // the kernel is revoking it: short, bounded
      return;
    }
  }

  /** A GPU job on resource i's pages; the engine looks up where they are when it runs (an eviction may have moved them). */
  function runGpu(i: number, pages: number, value: number): boolean {
    if (inlineEngine) {
      const cur = table.get(i);
      if (cur !== undefined) gpuWrite(cpu, sharing.dataGfn(bufferOf(shared, i, cur)), pages, value);
      return true;
    }
    cpu.write32(gfn(JOB_GFN), JOB.INTO * 4, i);
    cpu.write32(gfn(JOB_GFN), JOB.PAGES * 4, pages);
    cpu.write32(gfn(JOB_GFN), JOB.VALUE * 4, value);
    cpu.cmpxchg32(gfn(JOB_GFN), JOB.STATE * 4, 0, 1);
    while (cpu.read32(gfn(JOB_GFN), JOB.STATE * 4) !== 2) {
      if (cpu.stopping) return false; // the engine stops with the host
      cpu.sleep(0.05);
    }
    cpu.cmpxchg32(gfn(JOB_GFN), JOB.STATE * 4, 2, 0);
    bump(report, 'gpu_runs');
    return true;
  }

  function fault(req: IoreqRequest, fe: GpuFrontendEnv): IoreqAnswer {
    bump(report, 'faults_seen');
    // A misbehaving device model (the toolstack's test key): RETRY for ever.
    if (xsRead(cpu.store, cpu.domid as number, XS_KEY.DM_RETRY_STORM) !== 0) return { data: 0, fault: FAULT_ANSWER.RETRY };
    if (fe.fault_policy === 'fail') return { data: 0, fault: FAULT_ANSWER.FAIL };
    if (fe.fault_policy === 'none') return { data: 0, fault: FAULT_ANSWER.NONE };
    // remap: if the gfn belongs to a blob the kernel evicted, map it back and let the access retry.
    for (let i = fe.domid * RES_PER_FE; i < (fe.domid + 1) * RES_PER_FE; i++) {
      const st = shared.state(i);
      if (st === RS.FREE) continue;
      const at = table.field(i, RESF.AT);
      if (at < 0 || req.gfn < at || req.gfn >= at + table.field(i, RESF.PAGES)) continue;
      if (st === RS.EVICTING) return { data: 0, fault: FAULT_ANSWER.RETRY };
      if (st === RS.EVICTED && shared.cas(i, RS.EVICTED, RS.CREATED)) {
        const cur = table.get(i);
        if (cur !== undefined && mapBlob(fe, i, cur, cur.at) === 0) {
          bump(report, 'remaps');
          return { data: 0, fault: FAULT_ANSWER.RETRY };
        }
      }
    }
    return fe.missing_page === 'zero' && sharing.design === 'lending' ? zeroPage(fe, req.gfn) : { data: 0, fault: FAULT_ANSWER.FAIL };
  }

  /**
   * Lending's other answer when there is no page to give (the RFC's rule 6):
   * a zeroed page of dom0's lent at the faulting gfn, and the access retried.
   * The page is the one the buffer slot of that gfn would have there in
   * dom0's pool (POOL_GFN + slot × MAX_BLOB_PAGES + offset): no buffer holds
   * it while the slot's buffer is not lent there (an eviction migrates a
   * buffer's pages, never beyond its size). It is reclaimed like any lend:
   * before the slot's buffer is lent again (sharing.ts), or with the
   * frontend's window when it goes. A gfn outside the buffer window: FAIL.
   */
  function zeroPage(fe: GpuFrontendEnv, g: number): IoreqAnswer {
    const k = g - fe.window_gfn;
    if (k < 0 || k >= RES_PER_FE * MAX_BLOB_PAGES) return { data: 0, fault: FAULT_ANSWER.FAIL };
    const page = gfn(POOL_GFN + slotOf(fe.domid, Math.floor(k / MAX_BLOB_PAGES)) * MAX_BLOB_PAGES + (k % MAX_BLOB_PAGES));
    if (page + 1 > gpu.backend_memory_pages) return { data: 0, fault: FAULT_ANSWER.FAIL };
    cpu.mem.writeWords(page, 0, (zeros ??= new Uint32Array(cpu.page_size_bytes >> 2)));
    const r = cpu.hc.dm_map(domid(fe.domid), { kind: 'ram', gfn: page }, 1, gfn(g), 'mmio_direct');
    if (r.rc !== 0) {
      bump(report, `zero_page_refused_${-r.rc}`);
      return { data: 0, fault: FAULT_ANSWER.FAIL };
    }
    bump(report, 'zero_pages');
    return { data: 0, fault: FAULT_ANSWER.RETRY };
  }

  /** The answer to one request the device model has not applied yet. */
  function serve(req: IoreqRequest): IoreqAnswer {
    const fe = fes.get(req.domid);
    if (fe === undefined) return { data: 0xffffffff, fault: FAULT_ANSWER.NONE };
    return req.type === IOREQ_TYPE.FAULT ? fault(req, fe) : req.gfn === fe.mmio_gfn ? mmio(req, fe) : { data: 0xffffffff, fault: FAULT_ANSWER.NONE };
  }

  const serveStep = ioreqLoop(cpu, end, { apply: serve, served: (applied) => bump(report, applied ? 'ioreqs' : 'duplicates') });

  /**
   * The toolstack destroyed a frontend (xenstore's @releaseDomain): give up
   * its queue mapping, revoke everything of its blob window by range, and
   * free the pages stolen from it (they stayed dom0's). Once the domain is
   * gone for good — a zombie until the last reference to one of its pages
   * goes, then XENMEM_current_reservation answers ESRCH — the device model
   * forgets it, with one last Revoke of the window. Each Revoke must
   * succeed (the seed: a frontend "dying, a zombie or gone does not make
   * Revoke fail").
   */
  const released = new Map<number, 'released' | 'gone'>();
  function revokeWindow(f: GpuFrontendEnv, when: string): void {
    const rc = cpu.hc.dm_revoke({ fe: domid(f.domid), gfn: gfn(f.window_gfn), count: RES_PER_FE * MAX_BLOB_PAGES });
    if (rc !== 0) failed(`revoke_${when}_frontend_got_${rc}`);
  }
  function releaseGone(): void {
    for (const f of gpu.frontends) {
      const was = released.get(f.domid);
      if (was === 'released' && cpu.hc.current_reservation(domid(f.domid)) === -ESRCH) {
        revokeWindow(f, 'gone');
        released.set(f.domid, 'gone');
        bump(report, 'frontends_gone');
      }
      if (was !== undefined || xsRead(cpu.store, f.domid, XS_KEY.RELEASED) === 0) continue;
      released.set(f.domid, 'released');
      const q = queues.get(f.domid);
      if (q !== undefined) {
        cpu.hc.gnttab_unmap_grant_ref(grantHandle(q.handle));
        queues.set(f.domid, undefined);
      }
      revokeWindow(f, 'released');
      for (const [i, r] of table.of(f.domid)) {
        if (primitives && r.userptr_gfn >= 0) freeStolen(r);
        else unmapBlob(i);
        shared.set(i, RS.FREE);
      }
      bump(report, 'frontends_released');
    }
  }

  // All of it is serving: what the frontends ask, and what the toolstack's release of one needs.
  const step = (): void | Promise<void> => {
    if (!started) start();
    releaseGone();
    return serveStep();
  };
  return {
    step,
    serve: step,
    finish() {
      for (let fe = 0; fe < 512; fe++) {
        const q = queues.get(fe);
        if (q === undefined) continue;
        cpu.hc.gnttab_unmap_grant_ref(grantHandle(q.handle));
        queues.set(fe, undefined);
      }
    },
    async close() {
      await end.close();
    },
  };
}

/** What the simulated GPU does: write the pattern into the (stolen, now dom0's) pages. */
function gpuWrite(cpu: GuestCpu, into: number, pages: number, value: number): void {
  for (let p = 0; p < pages; p++) for (let w = 0; w < CHECK_WORDS; w++) cpu.write32(gfn(into + p), w * 4, pattern(value, p, w));
}

/**
 * dom0's kernel side (vCPU 1): the GPU engine runs queued jobs; the MMU
 * notifier evicts mapped RAM blobs under memory pressure with a direct
 * Revoke — it never waits for the device model.
 */
export function gpuKernel(cpu: GuestCpu, gpu: GpuEnv, report: Report, dma_gfn = -1, off: readonly string[] = []): Workload {
  const shared = new Shared(cpu);
  const table = new ResourceTable(cpu, shared);
  const sharing = sharingFor(cpu, gpu, report, table);
  // Behaviours a swarm seed left out (hypervisor/host/sim/swarm.ts): the GPU engine always runs (the device model waits for it).
  const dma = dmaPeek(cpu, gpu, report, off.includes('dma-peek') ? -1 : dma_gfn);
  const evicts = !off.includes('evictions');
  const tooling = !off.includes('toolstack');
  // The next gfn of the same mapping window: the toolstack's foreign map of dom0's own page would land there.
  const tools = toolstack(cpu, gpu, report, TOOLSTACK_OWN_GFN, dma_gfn < 0 ? -1 : dma_gfn + 1);
  const lat: number[] = (report.samples['revoke_us'] ??= []);
  const period_us = gpu.evictions_per_s > 0 ? 1e6 / gpu.evictions_per_s : Infinity;
  let next_us = cpu.now_us() + period_us;
  let last_us = cpu.now_us();
  /** Run the job the device model posted, if one waits; whether one did. */
  const runJob = (): boolean => {
    if (cpu.read32(gfn(JOB_GFN), JOB.STATE * 4) !== 1) return false;
    // Where the pages are now: this vCPU's evictions may have migrated them since the job was posted.
    const i = cpu.read32(gfn(JOB_GFN), JOB.INTO * 4);
    const cur = table.get(i);
    if (cur !== undefined) gpuWrite(cpu, sharing.dataGfn(bufferOf(shared, i, cur)), cpu.read32(gfn(JOB_GFN), JOB.PAGES * 4), cpu.read32(gfn(JOB_GFN), JOB.VALUE * 4) | 0);
    cpu.cmpxchg32(gfn(JOB_GFN), JOB.STATE * 4, 1, 2);
    bump(report, 'gpu_jobs');
    return true;
  };
  return {
    step() {
      if (runJob()) return;
      if (tooling && tools.step()) return;
      const now = cpu.now_us();
      // Memory pressure the toolstack announces (chaos: an MMU-notifier storm) adds evictions.
      const pressure = xsRead(cpu.store, cpu.domid as number, XS_KEY.MEMORY_PRESSURE);
      const period = pressure > 0 ? 1e6 / (gpu.evictions_per_s + pressure) : period_us;
      if (!evicts || (now < next_us && now < last_us + period)) {
        if (!dma.step()) cpu.sleep(0.2);
        return;
      }
      last_us = now;
      next_us = now + period_us;
      if (pressure > 0) bump(report, 'pressure_scans');
      // Memory pressure: evict one shared buffer of a random frontend, if the design lets dom0 (sharing.ts).
      const fe = gpu.frontends[Math.floor(cpu.random() * gpu.frontends.length)];
      if (fe === undefined) return;
      const r0 = Math.floor(cpu.random() * RES_PER_FE);
      for (let k = 0; k < RES_PER_FE; k++) {
        const i = slotOf(fe.domid, (r0 + k) % RES_PER_FE);
        if (shared.state(i) !== RS.MAPPED || !shared.cas(i, RS.MAPPED, RS.EVICTING)) continue;
        const cur = table.get(i);
        if (cur === undefined) {
          shared.set(i, RS.MAPPED);
          continue;
        }
        const b = bufferOf(shared, i, cur);
        const t0 = cpu.now_us();
        // The adapter checks the answer: Revoke of a mapping this backend made "never fails for valid arguments" (the seed).
        const how = sharing.evict(fe.domid, b);
        if (how === 'refused') {
          shared.set(i, RS.MAPPED);
          bump(report, 'evictions_refused');
          return;
        }
        lat.push(cpu.now_us() - t0);
        keep(table, shared, i, cur, b);
        shared.set(i, RS.EVICTED);
        bump(report, 'evictions');
        return;
      }
    },
    // The end of the run: the engine still runs the jobs of commands a frontend is finishing; no evictions, no tools.
    serve() {
      if (!runJob()) cpu.sleep(0.2);
    },
    finish() {
      dma.release();
    },
  };
}

/** Frontend gfns a DMA peek picks from: where the drivers keep their buffers (driver.ts: from gfn 16 on). */
const DMA_FIRST_GFN = 16;
const DMA_SPAN_PAGES = 64;

/**
 * Device DMA emulation, as QEMU does it with xenforeignmemory_map: now and
 * then dom0's kernel maps a page of a frontend's buffers for a few steps,
 * reads it, and unmaps it. A Steal of that page meanwhile must fail
 * -EBUSY (docs/semantics.md §4: referenced by nobody else, not foreign-mapped). Returns
 * whether it did something this step.
 */
function dmaPeek(cpu: GuestCpu, gpu: GpuEnv, report: Report, at_gfn: number): { step(): boolean; release(): void } {
  let held = 0;
  const release = (): void => {
    if (held > 0 && cpu.hc.remove_from_physmap(gfn(at_gfn)) !== 0) bump(report, 'dma_unmap_fail');
    held = 0;
  };
  const step = (): boolean => {
    if (at_gfn < 0 || gpu.frontends.length === 0) return false;
    if (held > 0) {
      if (--held === 0 && cpu.hc.remove_from_physmap(gfn(at_gfn)) !== 0) bump(report, 'dma_unmap_fail');
      return true;
    }
    if (cpu.random() >= 0.25) return false;
    const fe = gpu.frontends[Math.floor(cpu.random() * gpu.frontends.length)]!;
    const g = DMA_FIRST_GFN + Math.floor(cpu.random() * DMA_SPAN_PAGES);
    // Refused when the page is not the frontend's RAM just now (stolen, Map'd, ballooned): fine.
    if (cpu.hc.foreign_map(domid(fe.domid), gfn(g), gfn(at_gfn)) !== 0) return true;
    cpu.read32(gfn(at_gfn), 0);
    held = 1 + Math.floor(cpu.random() * 8);
    bump(report, 'dma_maps');
    return true;
  };
  return { step, release };
}

/**
 * The foundation's guest workload: write and read back its own memory,
 * offer pages to peers through grants, map the peers' offers, read them,
 * unmap — or, one take in four, copy them with GNTTABOP_copy instead; a
 * privileged domain also foreign-maps its frontends' pages; now and then a
 * hypercall with a guest buffer and a balloon out/in.
 * Every value read is checked against what was written (CHECK_FAILS).
 *
 * Two checks follow Xen's grant semantics rather than the data:
 *  - one offer in 16 names a frame the granter does not have (a guest
 *    granting a page it gave back): the peer's map or copy must be
 *    GNTST_bad_page, and since a refused map leaves the entry as it was, the
 *    granter's end_access at DONE must succeed (grant-map-status-before-checks);
 *  - a mapping held (a persistent grant) is now and then mapped a second
 *    time, read-only: the entry is pinned by us, so that map must succeed
 *    whatever became of the granter — crashed, or destroyed and kept a zombie
 *    by our mapping (grant-map-refuse-crashed-granter).
 */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import { ACCESS, type CopyPtr } from '../hypervisor/public/guest.js';
import { GNTST_bad_domain, GNTST_bad_page, GNTST_okay } from '../hypervisor/public/errno.js';
import { domid, gfn, grantRef, type GrantHandle } from '../hypervisor/public/types.js';
import { DOM_WORDS, FIRST_REF, MAX_VCPUS_SEEN, MB, SLOTS, SLOT_WORDS, ST, slotBase, slotRef } from './mailbox.js';
import type { GuestEnv, Workload } from './workload.js';

/** Window gfns (from the vCPU's map window) of held mappings, above the per-slot ones (DOM_WORDS / SLOT_WORDS = 32). */
const HOLD_FIRST = 32;
const HOLD_SLOTS = 8;
/** The window gfn of the second mapping of a held grant, above the held ones. */
const AGAIN_AT = HOLD_FIRST + HOLD_SLOTS;
/** The frame of a bad offer: a gfn beyond every domain's p2m. */
const NOT_RAM = 0x0fffffff;

export interface GrantPingStats {
  selfChecks: number;
  checkFails: number;
  offers: number;
  maps: number;
  mapFails: number;
  endBusy: number;
  foreignPeeks: number;
}

export function grantPingWorkload(cpu: GuestCpu, env: GuestEnv, report: (fails: number, ops: number) => void): Workload {
  const me = cpu.domid as number;
  const v = cpu.vcpu as number;
  const ps = cpu.page_size_bytes;
  const share = SLOTS * cpu.nr_vcpus;
  // Pages [0, priv) are split between this domain's vCPUs; the last `share`
  // pages are offered to peers; one page per vCPU is the balloon page.
  const priv = Math.max(0, cpu.memory_pages - share - cpu.nr_vcpus);
  const per = Math.max(1, Math.floor(priv / cpu.nr_vcpus));
  const myFirst = v * per;
  // The last private page of each vCPU is its copy scratch page, granted to
  // its own domain (ref above every offer ref), so a copy can land in it by
  // gfn or through a grant ref — grant to grant, as a backend copying between
  // two frontends does (GNTTABOP_copy with two refs; the XSA-380 path).
  const scratch = per >= 2 && v < MAX_VCPUS_SEEN ? myFirst + per - 1 : -1;
  const scratchRef = grantRef(FIRST_REF + MAX_VCPUS_SEEN * SLOTS + v);
  const ownPages = scratch >= 0 ? per - 1 : per;
  let scratchGranted = false;
  const balloonGfn = cpu.memory_pages - share - cpu.nr_vcpus + v;
  let ballooned = false;
  const shadow = new Map<number, number>();
  let ops = 0;
  let fails = 0;
  let tick = 0;
  type Held = { handle: GrantHandle; until: number; peer: number; ref: number; val: number };
  const held: Array<Held | undefined> = new Array<Held | undefined>(HOLD_SLOTS).fill(undefined);
  /**
   * What a grant map or copy of peer p that died since its offer gives: its
   * domain gone (GNTST_bad_domain), or destroyed but kept a zombie, its p2m
   * torn down (GNTST_bad_page). Gone it cannot be while we hold a mapping of
   * its page: that reference keeps it in Xen's domain list.
   */
  const peerGone = (p: number, status: number): boolean =>
    status === GNTST_bad_page || (status === GNTST_bad_domain && !held.some((h) => h?.peer === p));

  const rnd32 = (): number => (cpu.random() * 0x100000000) >>> 0;
  const fail = (): void => {
    fails++;
  };

  function ownMemory(): void {
    if (priv < cpu.nr_vcpus) return;
    const g = myFirst + Math.floor(cpu.random() * ownPages);
    const off = Math.floor(cpu.random() * (ps / 4)) * 4;
    const key = g * ps + off;
    const want = shadow.get(key);
    if (want !== undefined && cpu.read32(gfn(g), off) !== want) fail();
    const val = rnd32();
    cpu.write32(gfn(g), off, val);
    shadow.set(key, val);
    if (cpu.read32(gfn(g), off) !== val) fail();
    ops++;
  }

  function offer(): void {
    if (env.peers.length === 0 || cpu.memory_pages < share + cpu.nr_vcpus) return;
    const k = tick % SLOTS;
    const b = slotBase(me, v, k);
    const st = Atomics.load(cpu.store, b + MB.STATE);
    const ref = grantRef(slotRef(v, k));
    const g = gfn(cpu.memory_pages - share + v * SLOTS + k);
    if (st === ST.EMPTY) {
      const peer = env.peers[Math.floor(cpu.random() * env.peers.length)] ?? me;
      const val = rnd32();
      cpu.write32(g, 0, val);
      cpu.write32(g, ps - 4, val);
      const ro = cpu.random() < 0.5;
      const bad = cpu.random() < 1 / 16;
      cpu.grants.grant_access(ref, domid(peer), bad ? gfn(NOT_RAM) : g, ro);
      cpu.store[b + MB.TO] = peer;
      cpu.store[b + MB.REF] = ref;
      cpu.store[b + MB.VALUE] = val;
      cpu.store[b + MB.RO] = ro ? 1 : 0;
      cpu.store[b + MB.BAD] = bad ? 1 : 0;
      Atomics.store(cpu.store, b + MB.STATE, ST.OFFERED);
      ops++;
    } else if (st === ST.DONE) {
      const bad = cpu.store[b + MB.BAD] === 1;
      if (cpu.grants.end_access(ref)) {
        // A writable mapper left its mark at offset 4.
        if (!bad && cpu.store[b + MB.RO] === 0 && cpu.read32(g, 4) !== ((cpu.store[b + MB.VALUE]! + 1) >>> 0)) fail();
        Atomics.store(cpu.store, b + MB.STATE, ST.EMPTY);
      } else if (bad) {
        // Nothing can map a bad offer: the refusal left GTF_reading/GTF_writing behind with no pin.
        fail();
      }
    }
  }

  function take(): void {
    for (const p of env.peers) {
      const base = p * DOM_WORDS;
      const n = DOM_WORDS / SLOT_WORDS;
      const start = Math.floor(cpu.random() * n);
      for (let j = 0; j < n; j++) {
        const b = base + ((start + j) % n) * SLOT_WORDS;
        if (Atomics.load(cpu.store, b + MB.STATE) !== ST.OFFERED || cpu.store[b + MB.TO] !== me) continue;
        if (Atomics.compareExchange(cpu.store, b + MB.STATE, ST.OFFERED, ST.TAKEN) !== ST.OFFERED) continue;
        if (cpu.store[b + MB.BAD] === 1) refusedOne(p, b, (start + j) % n);
        else if (scratch >= 0 && cpu.random() < 0.25) copyOne(p, b);
        else mapOne(p, b, (start + j) % n);
        Atomics.store(cpu.store, b + MB.STATE, ST.DONE);
        return;
      }
    }
  }

  function mapOne(p: number, b: number, j: number): void {
    const ro = cpu.store[b + MB.RO] === 1;
    const val = cpu.store[b + MB.VALUE]! >>> 0;
    const k = holdSlot();
    const at = gfn(env.map_window_gfn + (k >= 0 ? HOLD_FIRST + k : j % Math.max(1, Math.min(HOLD_FIRST, env.map_window_pages - 1))));
    const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(p), ref: grantRef(cpu.store[b + MB.REF]!), host_gfn: at, readonly: ro });
    // A peer that died since its offer (chaos crash-domain) is not our failure (peerGone). A crashed one still maps.
    if (peerGone(p, r.status)) return;
    if (r.status !== GNTST_okay) {
      fail();
      return;
    }
    if (cpu.read32(at, 0) !== val || cpu.read32(at, ps - 4) !== val) fail();
    if (!ro) cpu.write32(at, 4, (val + 1) | 0);
    if (k >= 0) held[k] = { handle: r.handle, until: tick + 1 + holdTicks(), peer: p, ref: cpu.store[b + MB.REF]!, val };
    else if (cpu.hc.gnttab_unmap_grant_ref(r.handle) !== GNTST_okay) fail();
    ops++;
  }

  /** A bad offer (MB.BAD): its map or copy must be GNTST_bad_page (or the peer died since). */
  function refusedOne(p: number, b: number, j: number): void {
    const ref = grantRef(cpu.store[b + MB.REF]!);
    const ro = cpu.store[b + MB.RO] === 1;
    let st: number;
    if (scratch >= 0 && cpu.random() < 0.25) {
      st = cpu.hc.gnttab_copy({ src: { kind: 'ref', domid: domid(p), ref, offset: 0 }, dst: { kind: 'gfn', gfn: gfn(scratch), offset: 0 }, len: ps });
    } else {
      const at = gfn(env.map_window_gfn + (j % Math.max(1, Math.min(HOLD_FIRST, env.map_window_pages - 1))));
      const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(p), ref, host_gfn: at, readonly: ro });
      st = r.status;
      if (st === GNTST_okay) cpu.hc.gnttab_unmap_grant_ref(r.handle);
    }
    if (!peerGone(p, st)) fail();
    ops++;
  }

  /**
   * Map a held grant a second time, read-only, check it, unmap it. We pin
   * the entry, so the granter is at worst a zombie our mapping keeps, and
   * map_grant_ref looks no further than the pinned entry: it must succeed.
   */
  function mapHeldAgain(): void {
    if (AGAIN_AT >= env.map_window_pages - 1) return;
    const start = Math.floor(cpu.random() * HOLD_SLOTS);
    let h: Held | undefined;
    for (let i = 0; i < HOLD_SLOTS && h === undefined; i++) h = held[(start + i) % HOLD_SLOTS];
    if (h === undefined) return;
    const at = gfn(env.map_window_gfn + AGAIN_AT);
    const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(h.peer), ref: grantRef(h.ref), host_gfn: at, readonly: true });
    if (r.status !== GNTST_okay) {
      fail();
      return;
    }
    if (cpu.read32(at, 0) >>> 0 !== h.val || cpu.read32(at, ps - 4) >>> 0 !== h.val) fail();
    if (cpu.hc.gnttab_unmap_grant_ref(r.handle) !== GNTST_okay) fail();
    ops++;
  }

  /**
   * Persistent grants (as blkback keeps them): one map in four is held for
   * some steps in one of HOLD_SLOTS window gfns above the per-slot ones,
   * so this domain's maptrack has handles in use while its other vCPUs map
   * and unmap (the maptrack free-list race, XSA-228).
   */
  function holdSlot(): number {
    if (cpu.random() >= 0.25) return -1;
    for (let k = 0; k < HOLD_SLOTS; k++) if (held[k] === undefined && HOLD_FIRST + k < env.map_window_pages - 1) return k;
    return -1;
  }

  /** A few steps; one hold in eight lasts a few hundred (a device that keeps its persistent grants). */
  function holdTicks(): number {
    return cpu.random() < 1 / 8 ? 64 + Math.floor(cpu.random() * 192) : Math.floor(cpu.random() * 8);
  }

  function releaseHeld(all: boolean): void {
    for (let k = 0; k < HOLD_SLOTS; k++) {
      const h = held[k];
      if (h === undefined || (!all && tick < h.until)) continue;
      held[k] = undefined;
      if (cpu.hc.gnttab_unmap_grant_ref(h.handle) !== GNTST_okay) fail();
    }
  }

  /**
   * Take an offer by copying instead of mapping: the whole granted page into
   * the scratch page, then check it; a writable offer gets its mark (value+1
   * at offset 4) copied back into the granter's page.
   */
  function copyOne(p: number, b: number): void {
    const ro = cpu.store[b + MB.RO] === 1;
    const val = cpu.store[b + MB.VALUE]! >>> 0;
    const ref = grantRef(cpu.store[b + MB.REF]!);
    const sg = gfn(scratch);
    if (!scratchGranted) {
      cpu.grants.grant_access(scratchRef, domid(me), sg, false);
      scratchGranted = true;
    }
    const viaRef = cpu.random() < 0.5;
    const mine = (offset: number): CopyPtr => (viaRef ? { kind: 'ref', domid: domid(me), ref: scratchRef, offset } : { kind: 'gfn', gfn: sg, offset });
    const theirs = (offset: number): CopyPtr => ({ kind: 'ref', domid: domid(p), ref, offset });
    // Poison first: a copy that claims success but moved nothing is caught.
    cpu.write32(sg, 0, ~val);
    cpu.write32(sg, ps - 4, ~val);
    const st = cpu.hc.gnttab_copy({ src: theirs(0), dst: mine(0), len: ps });
    // A peer that died since its offer (chaos crash-domain) is not our failure (see mapOne).
    if (peerGone(p, st)) return;
    if (st !== GNTST_okay) {
      fail();
      return;
    }
    if (cpu.read32(sg, 0) >>> 0 !== val || cpu.read32(sg, ps - 4) >>> 0 !== val) fail();
    if (!ro) {
      cpu.write32(sg, 8, (val + 1) | 0);
      const back = cpu.hc.gnttab_copy({ src: mine(8), dst: theirs(4), len: 4 });
      if (back !== GNTST_okay && !peerGone(p, back)) fail();
    }
    ops++;
  }

  function foreignPeek(): void {
    if (env.frontends.length === 0) return;
    const fe = env.frontends[Math.floor(cpu.random() * env.frontends.length)]!;
    const pages = env.memory_pages[fe] ?? 0;
    if (pages === 0) return;
    const at = gfn(env.map_window_gfn + env.map_window_pages - 1);
    const rc = cpu.hc.foreign_map(domid(fe), gfn(Math.floor(cpu.random() * pages)), at);
    if (rc === 0) {
      cpu.read32(at, 0);
      if (cpu.last_access !== ACCESS.OK) fail();
      if (cpu.hc.remove_from_physmap(at) !== 0) fail();
      ops++;
    }
  }

  function hypercallBuffer(): void {
    if (priv < cpu.nr_vcpus) return;
    const g = gfn(myFirst + Math.floor(cpu.random() * per));
    if (cpu.hc.buffer_copy('from_guest', g, 0, 64) !== 0) fail();
    ops++;
  }

  function balloon(): void {
    if (balloonGfn < 0 || balloonGfn >= cpu.memory_pages) return;
    if (!ballooned) {
      // A page the guest used, then gives back: its data must not reach the next owner.
      cpu.write32(gfn(balloonGfn), 0, rnd32() | 1);
      if (cpu.hc.decrease_reservation([gfn(balloonGfn)]) === 1) ballooned = true;
      else fail();
    } else if (cpu.hc.populate_physmap([gfn(balloonGfn)]) === 1) {
      // Freshly populated memory must read as zero (it was scrubbed).
      if (cpu.read32(gfn(balloonGfn), 0) !== 0) fail();
      ballooned = false;
    }
    ops++;
  }

  return {
    step(): void {
      tick++;
      releaseHeld(false);
      if (tick % 2 === 0) mapHeldAgain();
      ownMemory();
      offer();
      take();
      if (tick % 16 === 0) hypercallBuffer();
      if (tick % 64 === 0) balloon();
      if (tick % 8 === 0 && env.frontends.length > 0) foreignPeek();
      if (tick % 256 === 0) report(fails, ops);
    },
    finish(): void {
      releaseHeld(true);
      if (scratchGranted && cpu.grants.end_access(scratchRef)) scratchGranted = false;
      // Leave no offer behind that a peer could still take.
      for (let k = 0; k < SLOTS; k++) {
        const b = slotBase(me, v, k);
        if (Atomics.compareExchange(cpu.store, b + MB.STATE, ST.OFFERED, ST.EMPTY) === ST.OFFERED) {
          cpu.grants.end_access(grantRef(slotRef(v, k)));
        }
      }
      report(fails, ops);
    },
  };
}

/**
 * The invariant checker (docs/semantics.md §6). `checkRunning` runs periodically on
 * the hypervisor's main thread while vCPUs race; `checkQuiescent` runs when
 * every vCPU is offline and compares counts exactly; `checkNoLeaks` runs
 * after every domain was destroyed. Each records checks and violations in
 * the shared InvariantLog (lock order and scrubbing are checked inline, in
 * locks.ts and mm.ts; use after unmap in the MMU). What a design keeps
 * of its own (its records) it checks itself, through MemoryDesign.check
 * and liveRecords (xen/design.ts).
 */
import { designOf } from '../xen/design.js';
import { nrGrantEntries } from '../xen/grant-table.js';
import { GTF_reading, GTF_writing, P2M } from '../public/types.js';
import { DOM, DS } from '../layout/domains.js';
import { PGC_allocated, PGC_count_mask, PS } from '../layout/frametable.js';
import { ACT, MT, MT_HDR, MT_INUSE } from '../layout/grants.js';
import { entryMfn, entryType, LEVEL_SPAN, PAGE_GEN } from '../layout/p2m.js';
import { p2mForEach, p2mForEachLeaf, p2mGet, p2mTablePages } from '../xen/p2m.js';
import { GLOBAL_LOCK, type Machine } from '../xen/machine.js';

/** Invariant 3: Σ tot_pages + free + in flight = RAM, tot_pages ≤ max_pages; under every page_alloc lock and the heap lock. */
export function checkFramesConserved(m: Machine): boolean {
  for (let d = 0; d < m.nd; d++) m.lock(m.dom.at(d, DOM.LOCK_PAGE_ALLOC), 'checker.frames_conserved', d);
  m.lock(GLOBAL_LOCK.HEAP, 'checker.frames_conserved');
  let sum = 0;
  const over: string[] = [];
  for (let d = 0; d < m.nd; d++) {
    const tot = m.dom.at(d, DOM.TOT_PAGES);
    sum += tot;
    // A domain whose max was lowered below its tot_pages by domctl is
    // ratcheting down (allowed); otherwise tot_pages never exceeds max_pages.
    if (m.dom.state(d) !== DS.FREE && tot > m.dom.at(d, DOM.MAX_PAGES) && m.dom.at(d, DOM.RATCHET) === 0) over.push(`d${d} tot ${tot} > max ${m.dom.at(d, DOM.MAX_PAGES)}`);
  }
  const free = m.heap.free;
  const inflight = m.heap.inflight;
  m.unlock(GLOBAL_LOCK.HEAP);
  for (let d = m.nd - 1; d >= 0; d--) m.unlock(m.dom.at(d, DOM.LOCK_PAGE_ALLOC));
  m.log.checked('frames_conserved');
  const ok = sum + free + inflight === m.config.nr_frames && over.length === 0;
  if (sum + free + inflight !== m.config.nr_frames) {
    m.log.violated('frames_conserved', `Σ tot_pages ${sum} + free ${free} + in flight ${inflight} ≠ ${m.config.nr_frames} frames`);
  }
  for (const o of over) m.log.violated('frames_conserved', o);
  return ok;
}

/** Invariant 5: GTF_reading/GTF_writing set exactly while pins exist (per entry, under its locks). */
export function checkGrantFlags(m: Machine): void {
  for (const d of m.dom.inUse()) {
    const gl = m.dom.at(d, DOM.LOCK_GRANT);
    m.lock(gl, 'checker.grant_flags', d);
    for (let ref = 0; ref < nrGrantEntries(m, d); ref++) {
      const al = m.dom.at(d, DOM.ACTIVE_LOCK_BASE) + ref;
      m.lock(al, 'checker.grant_flags', ref);
      const a = m.grants.actIdx(d, ref);
      const r = m.grants.active[a + ACT.RPIN]!;
      const w = m.grants.active[a + ACT.WPIN]!;
      const s1 = Atomics.load(m.grants.active, a + ACT.TSEQ);
      const flags = Atomics.load(m.grants.shared, m.grants.sharedIdx(d, ref)) & 0xffff;
      const s2 = Atomics.load(m.grants.active, a + ACT.TSEQ);
      const base = m.grants.active[a + ACT.PIN_TSEQ]!;
      m.unlock(al);
      // The guest stored over its entry since these pins began (or is doing
      // so now): the flags are its own doing, not the hypervisor's.
      if ((s1 & 1) !== 0 || s1 !== s2 || s1 !== base) continue;
      m.log.checked('grant_flags');
      const reading = (flags & GTF_reading) !== 0;
      const writing = (flags & GTF_writing) !== 0;
      if (r < 0 || w < 0 || reading !== r + w > 0 || writing !== w > 0) {
        m.log.violated('grant_flags', `d${d} ref ${ref}: pins r${r} w${w} but flags${reading ? ' reading' : ''}${writing ? ' writing' : ''}`);
      }
    }
    m.unlock(gl);
  }
}

/**
 * Invariant 2 floor, and invariant 4 as far as ownership goes: an in-use
 * frame has a count ≥ 1 (≥ 1 with PGC_allocated, which an owner implies),
 * and a ram_rw/ram_ro entry maps only a frame its domain owns — so a frame
 * that changed hands (stolen, freed, reused) is never still RAM elsewhere.
 */
export function checkRefFloorsAndOwnership(m: Machine): void {
  const nf = m.config.nr_frames;
  // The checks are counted here and added to the shared counters once per pass (an Atomics.add per frame and per entry was most of a pass).
  let refcounts = 0;
  let mappedNotRam = 0;
  let notFree = 0;
  for (let mfn = 0; mfn < nf; mfn++) {
    const st = m.ft.state(mfn);
    if (st !== PS.INUSE) continue;
    const ci = m.ft.countInfo(mfn);
    refcounts++;
    if ((ci & PGC_count_mask) < ((ci & PGC_allocated) !== 0 ? 1 : 0) || (ci & PGC_count_mask) === 0) {
      // A racing free may have just dropped it to zero; only a negative or
      // inconsistent count is a violation while running.
      if (m.ft.state(mfn) === PS.INUSE && m.ft.countInfo(mfn) === ci && (ci & PGC_count_mask) === 0 && (ci & PGC_allocated) !== 0) {
        m.log.violated('refcounts', `mfn ${mfn} allocated with count 0`);
      }
    }
  }
  for (const d of m.dom.inUse()) {
    p2mForEach(m, d, (g, e, idx) => {
      const t = entryType(e);
      notFree += checkEntryAllocated(m, d, g, e, idx);
      if (t !== P2M.ram_rw && t !== P2M.ram_ro) return;
      const gen = Atomics.load(m.p2m.w, idx + PAGE_GEN);
      if ((gen & 1) !== 0) return; // being removed right now
      mappedNotRam++;
      const mfn = entryMfn(e);
      const owner = m.ft.owner(mfn);
      // Re-read: the entry may have been removed (and the frame freed) since.
      if (!m.ft.isRam(mfn)) {
        m.log.violated('mapped_not_ram', `d${d} gfn ${g} is RAM-typed on MMIO mfn ${mfn}`);
        return;
      }
      if (owner !== d && p2mGet(m, d, g) === e && Atomics.load(m.p2m.w, idx + PAGE_GEN) === gen && m.ft.owner(mfn) !== d) {
        m.log.violated('mapped_not_ram', `d${d} gfn ${g} is ${t === P2M.ram_rw ? 'ram_rw' : 'ram_ro'} on mfn ${mfn} owned by d${owner}`);
      }
    });
  }
  m.log.checked('refcounts', refcounts);
  m.log.checked('mapped_not_ram', mappedNotRam);
  m.log.checked('reachable_not_free', notFree);
}

/**
 * Invariant 13 (reachable_not_free) for one p2m entry, while vCPUs race: an
 * entry naming a RAM frame (RAM, a foreign or grant map, a Map of backend
 * RAM) names an allocated one. The frame's state is read after the entry;
 * a frame not in use counts only if the entry and its GEN are the same
 * when read again (a removal bumps GEN before it unmaps and after its
 * flush, and only then may the frame go). Returns the checks it made (0 or 1).
 */
function checkEntryAllocated(m: Machine, d: number, g: number, e: number, idx: number): number {
  const mfn = entryMfn(e);
  if (!m.ft.isRam(mfn)) return 0;
  const gen = Atomics.load(m.p2m.w, idx + PAGE_GEN);
  if ((gen & 1) !== 0) return 0; // being removed right now
  const st = m.ft.state(mfn);
  if (st === PS.INUSE) return 1;
  if (p2mGet(m, d, g) === e && Atomics.load(m.p2m.w, idx + PAGE_GEN) === gen && m.ft.state(mfn) !== PS.INUSE) {
    m.log.violated('reachable_not_free', `d${d} gfn ${g} (type ${entryType(e)}) names mfn ${mfn}, which is ${st === PS.FREE ? 'free (on the heap)' : 'being freed (its count reached 0)'}`);
  }
  return 1;
}

/**
 * Invariant 12 (p2m_tables), on a quiet machine (every vCPU offline, no
 * hypercall running): every domain's linked tables are as many as it is
 * charged for and within its share; no pool page is linked twice or both
 * linked and free; every superpage is aligned, gfn and frame, and is RAM
 * (ram_rw/ram_ro) or a BAR Map's 2 MiB (mmio_direct/mmio_dm) — what
 * populate and Map make — and each Map superpage has its split's page
 * reserved.
 */
export function checkP2mTables(m: Machine): void {
  const seen = new Map<number, number>();
  let used = 0;
  for (let d = 0; d < m.nd; d++) {
    const pages = p2mTablePages(m, d);
    if (pages.length === 0) continue;
    m.log.checked('p2m_tables');
    used += pages.length;
    const charged = m.dom.at(d, DOM.P2M_PAGES);
    const reserved = m.dom.at(d, DOM.P2M_RESERVED);
    if (pages.length !== charged - reserved || charged > m.dom.at(d, DOM.P2M_PAGES_MAX)) {
      m.log.violated('p2m_tables', `d${d}: ${pages.length} tables linked, ${charged} charged (${reserved} reserved), ${m.dom.at(d, DOM.P2M_PAGES_MAX)} its share`);
    }
    let mapSupers = 0;
    for (const p of pages) {
      const other = seen.get(p);
      if (other !== undefined) m.log.violated('p2m_tables', `pool page ${p} is a table of d${other} and of d${d}`);
      seen.set(p, d);
    }
    p2mForEachLeaf(m, d, (l) => {
      if (l.level === 1) return;
      m.log.checked('p2m_tables');
      const span = LEVEL_SPAN[l.level]!;
      const t = entryType(l.e);
      const mfn = entryMfn(l.e);
      const map = t === P2M.mmio_direct || t === P2M.mmio_dm;
      if (map) mapSupers++;
      if (l.gfn % span !== 0 || mfn % span !== 0 || !(t === P2M.ram_rw || t === P2M.ram_ro || (map && l.level === 2))) {
        m.log.violated('p2m_tables', `d${d} gfn ${l.gfn}: a level-${l.level} superpage of type ${t} on mfn ${mfn}, misaligned or of a type no superpage has`);
      }
    });
    // Each BAR Map superpage holds the page its split will take.
    if (mapSupers !== reserved) m.log.violated('p2m_tables', `d${d}: ${mapSupers} Map superpages but ${reserved} pages reserved for their splits`);
  }
  m.log.checked('p2m_tables');
  for (let i = 0; i < m.p2m.freePages; i++) {
    const p = m.p2m.free[i]!;
    if (seen.has(p)) m.log.violated('p2m_tables', `pool page ${p} is free and a table of d${seen.get(p)}`);
  }
  if (used + m.p2m.freePages !== m.p2m.nr_pages) m.log.violated('p2m_tables', `pool: ${used} pages linked + ${m.p2m.freePages} free ≠ ${m.p2m.nr_pages}`);
}

export function checkRunning(m: Machine): void {
  checkFramesConserved(m);
  checkGrantFlags(m);
  checkRefFloorsAndOwnership(m);
  designOf(m).check(m);
}

/**
 * With every vCPU offline: each frame's count equals the references that
 * exist (allocation + foreign and grant map entries), and each active
 * entry's pins equal the maptrack handles that name it.
 */
export function checkQuiescent(m: Machine): void {
  checkRunning(m);
  const nf = m.config.nr_frames;
  const expected = new Int32Array(nf);
  for (let mfn = 0; mfn < nf; mfn++) if ((m.ft.countInfo(mfn) & PGC_allocated) !== 0) expected[mfn] = 1;
  for (const d of m.dom.inUse()) {
    p2mForEach(m, d, (_g, e) => {
      const t = entryType(e);
      // Foreign and grant maps hold a reference; so does every live page of
      // a Map (RAM frames only; a BAR has no page_info).
      if (t === P2M.map_foreign || t === P2M.grant_map_rw || t === P2M.grant_map_ro || ((t === P2M.mmio_direct || t === P2M.mmio_dm) && entryMfn(e) >= 0)) {
        const mfn = entryMfn(e);
        if (mfn < nf) expected[mfn]! += 1;
      }
    });
  }
  checkP2mTables(m);
  // tot_pages is exactly the number of frames a domain owns.
  const owned = new Map<number, number>();
  for (let mfn = 0; mfn < nf; mfn++) {
    const o = m.ft.owner(mfn);
    if (o >= 0) owned.set(o, (owned.get(o) ?? 0) + 1);
  }
  for (const d of m.dom.inUse()) {
    m.log.checked('frames_conserved');
    const tot = m.dom.at(d, DOM.TOT_PAGES);
    if (tot !== (owned.get(d) ?? 0)) m.log.violated('frames_conserved', `d${d}: tot_pages ${tot} but owns ${owned.get(d) ?? 0} frames`);
  }
  m.log.checked('refcounts', nf);
  for (let mfn = 0; mfn < nf; mfn++) {
    const got = m.ft.count(mfn);
    if (got !== expected[mfn]) m.log.violated('refcounts', `mfn ${mfn}: count ${got}, references that exist ${expected[mfn]}`);
  }
  const handles = new Map<string, number>();
  for (const d of m.dom.inUse()) {
    for (let h = 0; h < m.grants.handles(d); h++) {
      const i = m.grants.mtIdx(d, h);
      if ((m.grants.maptrack[i + MT.FLAGS]! & MT_INUSE) === 0) continue;
      const key = `${m.grants.maptrack[i + MT.GRANTER]! - 1}:${m.grants.maptrack[i + MT.REF]}`;
      handles.set(key, (handles.get(key) ?? 0) + 1);
    }
  }
  for (const d of m.dom.inUse()) {
    for (let ref = 0; ref < nrGrantEntries(m, d); ref++) {
      const a = m.grants.actIdx(d, ref);
      const pins = m.grants.active[a + ACT.RPIN]! + m.grants.active[a + ACT.WPIN]!;
      const maps = handles.get(`${d}:${ref}`) ?? 0;
      m.log.checked('grant_flags');
      if (pins !== maps) m.log.violated('grant_flags', `d${d} ref ${ref}: ${pins} pins but ${maps} maptrack handles`);
    }
  }
}

/** Invariant 8: after every domain was destroyed, nothing is left. */
export function checkNoLeaks(m: Machine): boolean {
  const problems: string[] = [];
  const nf = m.config.nr_frames;
  if (m.heap.free !== nf) problems.push(`${nf - m.heap.free} of ${nf} frames not free`);
  for (let d = 0; d < m.nd; d++) {
    const st = m.dom.state(d);
    if (st !== DS.FREE) problems.push(`d${d} still ${['free', 'creating', 'running', 'crashed', 'dying', 'zombie'][st]} with ${m.dom.at(d, DOM.TOT_PAGES)} pages`);
    if (m.grants.maptrack[m.grants.mtHdr(d) + MT_HDR.INUSE] !== 0 && st !== DS.FREE) problems.push(`d${d} maptrack in use`);
  }
  let pinned = 0;
  for (let i = 0; i < m.grants.active.length; i += ACT.WORDS) pinned += m.grants.active[i + ACT.RPIN]! + m.grants.active[i + ACT.WPIN]!;
  if (pinned !== 0) problems.push(`${pinned} grant pins left`);
  let mapped = 0;
  for (let d = 0; d < m.nd; d++) p2mForEachLeaf(m, d, () => mapped++);
  if (mapped !== 0) problems.push(`${mapped} p2m entries left`);
  const tables = m.p2m.nr_pages - m.p2m.freePages;
  if (tables !== 0) problems.push(`${tables} p2m table pages not back in the pool`);
  const rights = m.reach.rightsLeft();
  if (rights !== 0) problems.push(`${rights} rights left in the isolation record`);
  const records = designOf(m).liveRecords(m);
  if (records !== 0) problems.push(`${records} ${designOf(m).name} records left`);
  m.log.checked('no_leaks');
  for (const p of problems) m.log.violated('no_leaks', p);
  return problems.length === 0;
}

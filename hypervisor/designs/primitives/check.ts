/**
 * The primitives' part of the checker (MemoryDesign.check, xen/design.ts):
 * invariant 4 against the mapping registry, and the registry against the
 * frames (`records_match_frames`).
 */
import { MAX_MAPPINGS, MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { entryMfn, entryType, P2M_HOLE } from '../../layout/p2m.js';
import { P2M } from '../../public/types.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { isRamMfn, registryOf, stealOf } from './common.js';
import { p2mForEach, p2mGet } from '../../xen/p2m.js';
import { KIND, REC, STOLEN } from './registry.js';

/**
 * Invariant 4 against the registry (under its lock, so no primitive is half
 * done): every frame-carrying mmio_direct/mmio_dm entry of a domain is a
 * live page of a mapping into that domain, on that mapping's frame; a
 * nested mapping's parent still maps the pages it was made from (a nested
 * mapping that outlived its parent's Revoke is a use-after-revoke path).
 */
export function checkMappings(m: Machine): void {
  m.lock(GLOBAL_LOCK.REGISTRY, 'checker.mappings');
  try {
    checkRecordsMatchFrames(m);
    const reg = registryOf(m);
    // The look-ups' index against the records it is derived from (registry.ts).
    m.log.checked('records_match_frames');
    for (const p of reg.checkIndex()) m.log.violated('records_match_frames', `registry index: ${p}`);
    const owner = new Map<string, number>(); // `${fe}:${gfn}` → record
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL) continue;
      const fe = reg.at(r, REC.FRONTEND);
      for (let i = 0; i < reg.at(r, REC.COUNT); i++) if (reg.live(r, i)) owner.set(`${fe}:${reg.at(r, REC.FE_GFN) + i}`, r);
      const parent = reg.at(r, REC.PARENT) - 1;
      if (reg.at(r, REC.KIND) === KIND.MAP_NESTED) {
        m.log.checked('mapped_not_ram');
        const src = reg.at(r, REC.SRC);
        let orphan = parent < 0 || reg.at(parent, REC.STATE) !== 1 || reg.at(parent, REC.ID) !== reg.at(r, REC.PARENT_ID);
        for (let i = 0; !orphan && i < reg.at(r, REC.COUNT); i++) {
          if (!reg.live(r, i)) continue;
          const j = src + i - reg.at(parent, REC.FE_GFN);
          if (j < 0 || j >= reg.at(parent, REC.COUNT) || !reg.live(parent, j)) orphan = true;
        }
        if (orphan) m.log.violated('no_use_after_revoke', `nested mapping ${reg.at(r, REC.ID)} (d${reg.at(r, REC.BACKEND)}→d${fe}) still maps pages its parent's Revoke took`);
      }
    }
    let mapped = 0;
    for (const d of m.dom.inUse()) {
      p2mForEach(m, d, (g, e) => {
        const t = entryType(e);
        if (e === P2M_HOLE || (t !== P2M.mmio_direct && t !== P2M.mmio_dm) || entryMfn(e) < 0) return;
        mapped++;
        if (!owner.has(`${d}:${g}`)) m.log.violated('mapped_not_ram', `d${d} gfn ${g}: ${t === P2M.mmio_direct ? 'mmio_direct' : 'mmio_dm'} on mfn ${entryMfn(e)} with no live mapping`);
      });
    }
    // Counted once per pass, not per entry.
    m.log.checked('mapped_not_ram', mapped);
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

/**
 * Every live record names frames owned by whom it says (registry lock
 * held): a live page of a Map of RAM (or of a nested Map, traced to its
 * root) is mapped in its frontend on a frame its root backend owns; a
 * stolen frame (the STOLEN table, still current) is owned by its Steal's
 * backend, and that Steal is live, from the frontend the table names, with
 * that page live. A record that outlived its frame, or a frame that
 * changed hands under a live record, is how one domain's data reaches
 * another (issue 13, class 1).
 */
function checkRecordsMatchFrames(m: Machine): void {
  const reg = registryOf(m);
  // One for the pass over the whole registry and stolen-frame table (a
  // machine with no record has been checked too), one per page below.
  m.log.checked('records_match_frames');
  // The per-page checks, added to the shared counter once at the end.
  let pages = 0;
  const root = (r: number): number => {
    let x = r;
    for (let hops = 0; reg.at(x, REC.KIND) === KIND.MAP_NESTED && hops < MAX_MAPPINGS; hops++) x = reg.at(x, REC.PARENT) - 1;
    return x;
  };
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    const kind = reg.at(r, REC.KIND);
    if (reg.at(r, REC.STATE) !== 1 || (kind !== KIND.MAP_RAM && kind !== KIND.MAP_NESTED)) continue;
    const fe = reg.at(r, REC.FRONTEND);
    const first = reg.at(r, REC.FE_GFN);
    const top = root(r);
    if (top < 0 || reg.at(top, REC.KIND) !== KIND.MAP_RAM) continue; // a nested Map of a BAR: no frame table entry
    const be = reg.at(top, REC.BACKEND);
    for (let i = 0; i < reg.at(r, REC.COUNT); i++) {
      if (!reg.live(r, i)) continue;
      pages++;
      const mfn = entryMfn(p2mGet(m, fe, first + i));
      if (!isRamMfn(m, mfn) || m.ft.owner(mfn) !== be) {
        m.log.violated('records_match_frames', `mapping ${reg.at(r, REC.ID)} page ${i} (d${reg.at(r, REC.BACKEND)}→d${fe} gfn ${first + i}): frame ${mfn} owned by d${m.ft.owner(mfn)}, not its backend d${be}`);
      }
    }
  }
  // Each live Steal page has its frame's entry in the stolen-frame table
  // (current, or stale once the frame was freed, until reapSteals); each
  // current entry's frame is its Steal's backend's.
  const entries = new Set<number>();
  for (let mfn = 0; mfn < m.config.nr_frames; mfn++) {
    const k = mfn * STOLEN.WORDS;
    if (reg.stolen[k + STOLEN.FROM] !== 0) entries.add((reg.stolen[k + STOLEN.REC]! - 1) * MAX_PAGES_PER_OP + reg.stolen[k + STOLEN.IDX]!);
    const held = stealOf(m, mfn);
    if (held === undefined) continue;
    pages++;
    const be = reg.at(held.r, REC.BACKEND);
    if (m.ft.owner(mfn) !== be) m.log.violated('records_match_frames', `stolen frame ${mfn} (from d${held.fe}) owned by d${m.ft.owner(mfn)}, not its Steal's backend d${be}`);
  }
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.STEAL) continue;
    for (let i = 0; i < reg.at(r, REC.COUNT); i++) {
      if (!reg.live(r, i)) continue;
      pages++;
      if (!entries.has(r * MAX_PAGES_PER_OP + i)) m.log.violated('records_match_frames', `Steal ${reg.at(r, REC.ID)} page ${i} (d${reg.at(r, REC.FRONTEND)}→d${reg.at(r, REC.BACKEND)}) is live but no frame is recorded as taken by it`);
    }
  }
  m.log.checked('records_match_frames', pages);
}

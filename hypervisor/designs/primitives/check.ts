/**
 * The primitives' part of the checker (MemoryDesign.check, xen/design.ts):
 * invariant 4 against the mapping registry.
 */
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { DOM } from '../../layout/domains.js';
import { entryMfn, entryType, P2M_HOLE } from '../../layout/p2m.js';
import { P2M } from '../../public/types.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { registryOf } from './common.js';
import { KIND, REC } from './registry.js';

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
    const reg = registryOf(m);
    const owner = new Map<number, number>(); // p2m arena index → record
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL) continue;
      const fe = reg.at(r, REC.FRONTEND);
      const base = m.dom.at(fe, DOM.P2M_BASE);
      for (let i = 0; i < reg.at(r, REC.COUNT); i++) if (reg.live(r, i)) owner.set(base + reg.at(r, REC.FE_GFN) + i, r);
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
    for (const d of m.dom.inUse()) {
      const base = m.dom.at(d, DOM.P2M_BASE);
      const size = m.dom.at(d, DOM.P2M_SIZE);
      for (let g = 0; g < size; g++) {
        const e = Atomics.load(m.p2m.entries, base + g);
        const t = entryType(e);
        if (e === P2M_HOLE || (t !== P2M.mmio_direct && t !== P2M.mmio_dm) || entryMfn(e) < 0) continue;
        m.log.checked('mapped_not_ram');
        if (!owner.has(base + g)) m.log.violated('mapped_not_ram', `d${d} gfn ${g}: ${t === P2M.mmio_direct ? 'mmio_direct' : 'mmio_dm'} on mfn ${entryMfn(e)} with no live mapping`);
      }
    }
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

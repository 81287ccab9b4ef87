/**
 * Domain teardown's part in the registry (domain_relinquish_resources in
 * xen/arch/x86/domain.c is where Xen would call it): revoke what the dying
 * domain mapped or had mapped, forget its Steal records.
 */
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { KIND, REC } from './registry.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { reapSteals, registryOf } from './common.js';
import { BUG } from '../../layout/region.js';
import { allLive, revokeRecord } from './revoke.js';


// ---------------------------------------------------------------- life cycle

/**
 * Domain d is being destroyed (its vCPUs are offline): revoke every mapping
 * it is the frontend or the backend of (nested children first, inside
 * revokeRecord); forget the Steal records of either side — pages stolen
 * from d stay the backend's, pages d stole go with d's RAM.
 */
export function registryDomainDying(m: Machine, d: number): void {
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.domain_dying');
  try {
    const reg = registryOf(m);
    // d's live records either side (the registry's index), in record order, each asked again when its turn
    // comes (an earlier one's Revoke may have revoked it: a nested child).
    const mine = [...new Set([...reg.byFrontend(d), ...reg.byBackend(d)])].sort((a, b) => a - b);
    for (const r of mine) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL) continue;
      if (reg.at(r, REC.FRONTEND) === d || reg.at(r, REC.BACKEND) === d) revokeRecord(m, r, allLive(m, r));
    }
    // Its Steals end: the frames stay where they are (the backend's).
    reapSteals(m, (r) => reg.at(r, REC.FRONTEND) === d || reg.at(r, REC.BACKEND) === d);
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.STEAL) continue;
      if (reg.at(r, REC.FRONTEND) === d || reg.at(r, REC.BACKEND) === d) BUG(`d${d} dying: Steal record ${r} outlived its pages`);
    }
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

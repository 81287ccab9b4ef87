/**
 * Domain teardown's part in the registry (domain_relinquish_resources in
 * xen/arch/x86/domain.c is where Xen would call it): revoke what the dying
 * domain mapped or had mapped, forget its Steal records.
 */
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { KIND, REC } from './registry.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { registryOf } from './common.js';
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
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL) continue;
      if (reg.at(r, REC.FRONTEND) === d || reg.at(r, REC.BACKEND) === d) revokeRecord(m, r, allLive(m, r));
    }
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.STEAL) continue;
      if (reg.at(r, REC.FRONTEND) === d || reg.at(r, REC.BACKEND) === d) {
        const link = reg.at(r, REC.LINK);
        if (link !== 0) reg.set(link - 1, REC.LINK, 0);
        reg.free(r);
      }
    }
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

/**
 * Domain references (Xen's get_domain/put_domain, xen/common/domain.c and
 * include/xen/sched.h): an operation on another
 * domain holds one so the slot cannot be freed (and its domid reused) under
 * it. A zombie's slot is freed when its last page and last reference go.
 */
import { DOM, DS } from '../layout/domains.js';
import { BUG } from '../layout/region.js';
import type { Machine } from './machine.js';
import { setReapHook } from './mm.js';
import { p2mFreeTables } from './p2m.js';

/** get_domain: a reference that keeps d's slot from being freed. Fails unless d is running. */
export function getDomain(m: Machine, d: number): boolean {
  if (!Number.isInteger(d) || d < 0 || d >= m.nd) return false;
  m.dom.add(d, DOM.REFCNT, 1);
  if (m.dom.state(d) !== DS.RUNNING) {
    putDomain(m, d);
    return false;
  }
  return true;
}

export function putDomain(m: Machine, d: number): void {
  const n = m.dom.add(d, DOM.REFCNT, -1);
  if (n < 0) BUG(`domain d${d} refcount below zero`);
  if (n === 0) reapDomain(m, d);
}

/** Free a zombie's slot when nothing references it any more. */
export function reapDomain(m: Machine, d: number): void {
  if (m.dom.state(d) !== DS.ZOMBIE) return;
  if (m.dom.at(d, DOM.TOT_PAGES) !== 0 || m.dom.at(d, DOM.REFCNT) !== 0) return;
  // Nothing can walk its p2m now: its tables go back to the pool first.
  p2mFreeTables(m, d, () => m.dom.state(d) === DS.ZOMBIE && m.dom.at(d, DOM.TOT_PAGES) === 0 && m.dom.at(d, DOM.REFCNT) === 0);
  m.dom.cas(d, DOM.STATE, DS.ZOMBIE, DS.FREE);
}
setReapHook(reapDomain);


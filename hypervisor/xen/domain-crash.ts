/** domain_crash (xen/common/domain.c): the guest stops; the toolstack destroys it later (on_crash=destroy). */
import { DOM, DS } from '../layout/domains.js';
import type { Machine } from './machine.js';

export function domainCrash(m: Machine, d: number, _reason: string): boolean {
  return m.dom.cas(d, DOM.STATE, DS.RUNNING, DS.CRASHED);
}

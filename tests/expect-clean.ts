/**
 * What a unit test's machine must be after an operation, asserted the same
 * way by every test beside the Xen core and the primitives: quiescent (the
 * checker's counts match), nothing logged — each record printed as its
 * invariant and text, so a failure says what fired — and, where asked,
 * frames conserved; after destroying every domain, nothing leaked.
 */
import { expect } from 'vitest';
import { checkFramesConserved, checkNoLeaks, checkQuiescent } from '../hypervisor/checker/checker.js';
import { DS } from '../hypervisor/layout/domains.js';
import { domainDestroy } from '../hypervisor/xen/domain.js';
import type { Machine } from '../hypervisor/xen/machine.js';

export function expectClean(m: Machine, o: { conserved?: boolean } = {}): void {
  checkQuiescent(m);
  if (o.conserved === true) expect(checkFramesConserved(m)).toBe(true);
  expect(m.log.records().map((r) => `${r.invariant}: ${r.text}`)).toEqual([]);
}

/** Destroy every domain still there, highest domid first; then no leaks and nothing logged. */
export function expectAllDestroyed(m: Machine): void {
  for (let d = m.nd - 1; d >= 0; d--) if (m.dom.state(d) !== DS.FREE) expect(domainDestroy(m, d)).toBe(0);
  expect(checkNoLeaks(m)).toBe(true);
  expect(m.log.records().map((r) => `${r.invariant}: ${r.text}`)).toEqual([]);
}

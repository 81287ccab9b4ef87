/**
 * domain-ref.ts at its bounds: get_domain refuses a domid out of range and a
 * domain not running, leaving its count as it was; put_domain below zero is
 * a hypervisor bug; a zombie's slot is freed (its p2m tables back to the
 * pool) only once both its pages and its references are gone — Xen's
 * put_domain → domain_destroy once the refcount drops to 0 (xen/common/domain.c).
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { DOM, DS } from '../layout/domains.js';
import { HypervisorBug } from '../layout/region.js';
import { domainDestroy } from './domain.js';
import { getDomain, putDomain, reapDomain } from './domain-ref.js';

const refs = (m: ReturnType<typeof testMachine>, d: number): number => m.dom.at(d, DOM.REFCNT);

describe('domain references', () => {
  it('get_domain: a domid out of range or not an integer is refused, nothing counted', () => {
    const m = testMachine();
    const before = [0, 1, 2].map((d) => refs(m, d));
    for (const d of [-1, m.nd, m.nd + 1, 1.5, NaN]) expect(getDomain(m, d), `d ${d}`).toBe(false);
    expect([0, 1, 2].map((d) => refs(m, d))).toEqual(before);
  });

  it('get_domain of a running domain counts one; put_domain gives it back; the last domid in range works', () => {
    const m = testMachine();
    const r = refs(m, 1);
    expect(getDomain(m, 1)).toBe(true);
    expect(getDomain(m, 1)).toBe(true);
    expect(refs(m, 1)).toBe(r + 2);
    putDomain(m, 1);
    putDomain(m, 1);
    expect(refs(m, 1)).toBe(r);
    expect(m.dom.state(1)).toBe(DS.RUNNING);
    // The last slot: free, so refused, but looked at (no RangeError) and left as it was.
    const last = m.nd - 1;
    expect(getDomain(m, last)).toBe(false);
    expect(refs(m, last)).toBe(0);
    expect(m.dom.state(last)).toBe(DS.FREE);
  });

  it('get_domain of a crashed, dying or zombie domain is refused and its count restored', () => {
    const m = testMachine();
    for (const st of [DS.CRASHED, DS.DYING, DS.ZOMBIE, DS.CREATING]) {
      m.dom.set(2, DOM.STATE, st);
      const r = refs(m, 2);
      expect(getDomain(m, 2), `state ${st}`).toBe(false);
      expect(refs(m, 2)).toBe(r);
      expect(m.dom.state(2)).toBe(st); // a zombie with pages is not reaped by it
    }
  });

  it('put_domain below zero is a hypervisor bug', () => {
    const m = testMachine();
    m.dom.set(2, DOM.REFCNT, 0);
    let e: unknown;
    try {
      putDomain(m, 2);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(HypervisorBug);
    expect((e as Error).message).toBe('domain d2 refcount below zero');
  });

  it('a zombie is freed when its last reference goes, not before; its p2m tables go back to the pool', () => {
    const m = testMachine();
    expect(getDomain(m, 1)).toBe(true);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(m.dom.state(1)).toBe(DS.ZOMBIE);
    expect(refs(m, 1)).toBe(1);
    expect(m.dom.at(1, DOM.TOT_PAGES)).toBe(0);
    expect(m.dom.at(1, DOM.P2M_LEVELS)).toBeGreaterThan(0);
    reapDomain(m, 1); // still referenced
    expect(m.dom.state(1)).toBe(DS.ZOMBIE);
    expect(m.dom.at(1, DOM.P2M_LEVELS)).toBeGreaterThan(0);
    putDomain(m, 1);
    expect(refs(m, 1)).toBe(0);
    expect(m.dom.state(1)).toBe(DS.FREE);
    expect(m.dom.at(1, DOM.P2M_LEVELS)).toBe(0);
    expect(m.dom.at(1, DOM.P2M_PAGES)).toBe(0);
  });

  it('a zombie with a page still counted stays until the page goes too; a running domain is never reaped', () => {
    const m = testMachine();
    expect(getDomain(m, 1)).toBe(true);
    expect(domainDestroy(m, 1)).toBe(0);
    m.dom.set(1, DOM.TOT_PAGES, 1); // as a page another domain still references would leave it
    putDomain(m, 1);
    expect(refs(m, 1)).toBe(0);
    expect(m.dom.state(1)).toBe(DS.ZOMBIE);
    expect(m.dom.at(1, DOM.P2M_LEVELS)).toBeGreaterThan(0);
    m.dom.set(1, DOM.TOT_PAGES, 0);
    reapDomain(m, 1);
    expect(m.dom.state(1)).toBe(DS.FREE);
    expect(m.dom.at(1, DOM.P2M_LEVELS)).toBe(0);
    // Running, no references, no pages: reapDomain leaves it.
    m.dom.set(2, DOM.TOT_PAGES, 0);
    m.dom.set(2, DOM.REFCNT, 0);
    reapDomain(m, 2);
    expect(m.dom.state(2)).toBe(DS.RUNNING);
    expect(m.dom.at(2, DOM.P2M_LEVELS)).toBeGreaterThan(0);
  });
});

/**
 * Invariant 13, reachable_not_free: a frame that a p2m entry names, or that an
 * access reaches at a TLB fill, is allocated. Shown with a foreign map whose
 * page reference is dropped while its entry stays (the switch
 * pinned-userptr-unpin-while-mapped): the source frees the page, and dom0's
 * entry names a free frame.
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { checkRunning } from '../checker/checker.js';
import { DOM } from '../layout/domains.js';
import { PS } from '../layout/frametable.js';
import { entryMfn } from '../layout/p2m.js';
import { gfn } from '../public/types.js';
import { VcpuContext } from './guest-cpu.js';
import { decreaseReservation, foreignMap } from './memory.js';
import { p2mGet } from './p2m.js';

const SRC_GFN = 5;
const AT = 100;

function freedUnderForeignMap(bugs: string): { m: ReturnType<typeof testMachine>; mfn: number } {
  const m = testMachine({ bugs });
  expect(foreignMap(m, 0, 1, SRC_GFN, AT)).toBe(0);
  const mfn = entryMfn(p2mGet(m, 0, AT));
  expect(decreaseReservation(m, 1, [SRC_GFN])).toBe(1);
  return { m, mfn };
}

describe('reachable_not_free', () => {
  it('a foreign map keeps its frame allocated after the source frees its gfn: no violation', () => {
    const { m, mfn } = freedUnderForeignMap('');
    expect(m.ft.state(mfn)).toBe(PS.INUSE);
    checkRunning(m);
    const dom0 = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
    dom0.start();
    dom0.read32(gfn(AT), 0);
    expect(m.log.records().filter((v) => v.invariant === 'reachable_not_free')).toEqual([]);
    expect(m.log.counts()['reachable_not_free']?.checks ?? 0).toBeGreaterThan(0);
  });

  it('with the reference dropped, the checker sees the entry name a free frame, and an access sees it at its TLB fill', () => {
    const { m, mfn } = freedUnderForeignMap('pinned-userptr-unpin-while-mapped');
    expect(m.ft.state(mfn)).toBe(PS.FREE);
    checkRunning(m);
    const walked = m.log.records().filter((v) => v.invariant === 'reachable_not_free');
    expect(walked.map((v) => v.text)).toEqual([`d0 gfn ${AT} (type 14) names mfn ${mfn}, which is free (on the heap)`]);
    const dom0 = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
    dom0.start();
    dom0.read32(gfn(AT), 0);
    const filled = m.log.records().filter((v) => v.invariant === 'reachable_not_free').slice(1);
    expect(filled.map((v) => v.text)).toEqual([`d0 read gfn ${AT} (TLB fill), reaching mfn ${mfn}, which is free (on the heap)`]);
  });
});

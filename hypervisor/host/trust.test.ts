/**
 * What a request off the Redis transport may say (trust.ts): the device
 * model refuses what the shared ioreq page does not back — a seq from the
 * future, other contents than the slot's, a buffered position not yet
 * written or with other contents — and lets duplicates through to its
 * exactly-once record.
 */
import { describe, expect, it } from 'vitest';
import { publishIoreq, testMachine, dmAndFrontend } from '../../tests/test-machine.js';
import { ioreqServerCreate } from '../xen/ioreq.js';
import { DOM } from '../layout/domains.js';
import { IOREQ_TYPE, type IoreqRequest } from '../public/ioreq.js';
import { gfn } from '../public/types.js';
import { requestCheck } from './trust.js';

const MMIO = 600;

function rig(): { check: (r: IoreqRequest) => string | undefined; server: number; slot: number; post: (v: number) => void } {
  const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
  const server = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 1, posted: true }], 'none', { bufioreq: true });
  const { fe } = dmAndFrontend(m, 1, server);
  const slot = m.dom.at(1, DOM.VCPU_BASE);
  publishIoreq(m, { slot, fe: 1, vcpu: 0, server, owner: 0, seq: 5, gfn: MMIO + 1, dir: 1 });
  return { check: requestCheck(m), server, slot, post: (v) => fe.write32(gfn(MMIO), 4, v) };
}

const sync = (server: number, o: Partial<IoreqRequest> = {}): IoreqRequest => ({ domid: 1, vcpu: 0, seq: 5, server, type: IOREQ_TYPE.COPY, dir: 1, gfn: MMIO + 1, offset: 0, size: 4, data: 0, ...o });

describe('requestCheck: a synchronous ioreq against its vCPU slot', () => {
  it('the slot\'s own ioreq passes; an older seq passes (a duplicate, for the record to answer)', () => {
    const r = rig();
    expect(r.check(sync(r.server))).toBeUndefined();
    expect(r.check(sync(r.server, { seq: 4 }))).toBeUndefined();
  });
  it('a seq from the future, other contents, another vCPU or server are refused', () => {
    const r = rig();
    expect(r.check(sync(r.server, { seq: 6 }))).toMatch(/future/);
    expect(r.check(sync(r.server, { data: 7 }))).toMatch(/contents differ/);
    expect(r.check(sync(r.server, { gfn: MMIO + 2 }))).toMatch(/contents differ/);
    expect(r.check(sync(r.server, { dir: 0 }))).toMatch(/contents differ/);
    expect(r.check(sync(r.server, { vcpu: 3 }))).toMatch(/vCPU 3 of 1/);
    expect(r.check(sync(r.server, { server: 7 }))).toMatch(/no such server|contents differ/);
    expect(r.check(sync(r.server, { domid: 9 }))).toMatch(/no such server|vCPU 0 of 0/);
  });
});

describe('requestCheck: a buffered ioreq against its ring', () => {
  it('a position written passes with the ring\'s contents, and is refused with others or from the future', () => {
    const r = rig();
    r.post(11);
    r.post(12);
    const buf = (seq: number, data: number): IoreqRequest => ({ domid: 1, vcpu: 0, seq, server: r.server, type: IOREQ_TYPE.COPY, dir: 0, gfn: MMIO, offset: 4, size: 4, data, buffered: true });
    expect(r.check(buf(0, 11))).toBeUndefined();
    expect(r.check(buf(1, 12))).toBeUndefined();
    expect(r.check(buf(1, 13))).toMatch(/contents differ/);
    expect(r.check(buf(2, 0))).toMatch(/future/);
  });
});

/**
 * What a request off the `redis` transport may say (docs/security.md): the
 * device model checks it against the shared ioreq pages before applying it.
 *
 * In Xen the event channel carries no payload: ioreq_send (xen/common/
 * ioreq.c) writes the ioreq into the vCPU's slot of the shared ioreq page
 * (get_ioreq) and only then notifies, and ioreq_send_buffered writes the
 * buffered_iopage_t ring the device model reads. The page is the truth;
 * the notification says where to look. Under the `redis` transport the
 * message is a copy of the slot sent ahead, so a message the slot does not
 * back — a sequence number the vCPU has not reached, or other contents for
 * the one it waits on — is not the hypervisor's, and is refused (never
 * applied, never reported as a violation). Its MAC (transport/auth.ts)
 * already keeps out strangers; this keeps a confused or replayed writer
 * from running ahead of the vCPU.
 */
import { MAX_IOREQ_SERVERS_PER_DOMAIN } from '../layout/constants.js';
import { DOM } from '../layout/domains.js';
import { IOS } from '../layout/ioreq-slots.js';
import { BUF, BUF_SLOTS } from '../layout/ioreq.js';
import type { Machine } from '../xen/machine.js';
import { IOREQ_STATE, type IoreqRequest } from '../public/ioreq.js';

/** The check a Redis device-model end applies to every request (RedisEndOptions.check): a reason to refuse it, or undefined. */
export function requestCheck(m: Machine): (req: IoreqRequest) => string | undefined {
  return (req) => {
    if (req.domid < 0 || req.domid >= m.nd || req.server < 0 || req.server >= MAX_IOREQ_SERVERS_PER_DOMAIN) return 'no such server';
    const nv = m.dom.at(req.domid, DOM.NR_VCPUS);
    if (req.vcpu < 0 || req.vcpu >= nv) return `vCPU ${req.vcpu} of ${nv}`;
    return req.buffered === true ? bufferedCheck(m, req) : slotCheck(m, req);
  };
}

/**
 * A synchronous ioreq against its vCPU's slot: a seq beyond the slot's is
 * from the future; the slot's own seq, while the vCPU waits on it, must
 * come with the slot's contents. An older seq is a duplicate, for the end's
 * exactly-once record to answer (docs/ioreq.md §9).
 */
function slotCheck(m: Machine, req: IoreqRequest): string | undefined {
  const slots = m.ios.slots;
  const i = m.ios.idx(m.dom.at(req.domid, DOM.VCPU_BASE) + req.vcpu);
  const seq = Atomics.load(slots, i + IOS.SEQ);
  if (req.seq > seq) return `seq from the future (the vCPU is at ${seq})`;
  if (req.seq < seq) return undefined;
  const st = Atomics.load(slots, i + IOS.STATE);
  if (st !== IOREQ_STATE.READY && st !== IOREQ_STATE.INPROCESS) return undefined;
  const same =
    slots[i + IOS.TYPE] === req.type &&
    slots[i + IOS.DIR] === req.dir &&
    slots[i + IOS.SIZE] === req.size &&
    slots[i + IOS.GFN] === req.gfn &&
    slots[i + IOS.OFFSET] === req.offset &&
    slots[i + IOS.SERVER] === req.server &&
    slots[i + IOS.DATA]! >>> 0 === req.data >>> 0;
  // The vCPU moved on meanwhile (answered, then a new ioreq): a duplicate after all.
  if (Atomics.load(slots, i + IOS.SEQ) !== seq) return undefined;
  return same ? undefined : `contents differ from the ioreq ${seq} in the vCPU's slot`;
}

/**
 * A buffered ioreq against its ring: its position must be one a vCPU
 * wrote (below WRITE), and while the ring still holds that position (not
 * yet overwritten, BUF_SLOTS behind WRITE) the contents must be the ring's.
 * Positions on the wire count on without wrapping; the ring's int32 ones wrap.
 */
function bufferedCheck(m: Machine, req: IoreqRequest): string | undefined {
  const buf = m.ioreq.buf;
  const b = m.ioreq.bufIdx(req.domid, req.server);
  const pos = req.seq | 0;
  const write = Atomics.load(buf, b + BUF.WRITE);
  const behind = (write - pos) | 0;
  if (behind <= 0) return `buffered position from the future (the ring is at ${write})`;
  if (behind >= BUF_SLOTS) return undefined; // overwritten since: only its position can be checked
  const e = m.ioreq.bufEntry(b, pos);
  const meta = buf[e + BUF.META]!;
  const same = buf[e + BUF.GFN] === req.gfn && buf[e + BUF.OFFSET] === req.offset && (meta & 0xf) === req.size && ((meta >>> 4) & 0xf) === req.type && meta >>> 8 === req.vcpu && buf[e + BUF.DATA]! >>> 0 === req.data >>> 0;
  // A vCPU may have reused the place while we read it: then nothing can be said.
  if (((Atomics.load(buf, b + BUF.WRITE) - pos) | 0) >= BUF_SLOTS) return undefined;
  return same ? undefined : `contents differ from the ring's entry ${pos}`;
}

/**
 * The device model's end of the `redis` transport, as a vCPU thread makes
 * it (loaded only under that transport: ioredis and msgpackr cost every
 * vCPU thread megabytes it would not use otherwise): verified with the keys
 * of its servers, checked against the shared ioreq pages (trust.ts),
 * abandoned when the run stops, and its refusals counted in shared memory.
 */
import { CTL } from '../layout/control.js';
import type { Machine } from '../xen/machine.js';
import { keysFromWire, type WireKeys } from '../../transport/auth.js';
import { REJECT_EVENTS_MAX } from '../../transport/constants.js';
import { RedisServerEnd } from '../../transport/redis-end.js';
import type { ServerEndFactory } from './transport-ends.js';
import { untilStop } from './transport-ends.js';
import { requestCheck } from './trust.js';

export function redisEndFactory(m: Machine, tr: { url: string; namespace: string; keys?: WireKeys }, servers: Array<{ target: number; index: number }>, threadId: number): ServerEndFactory {
  const keys = tr.keys !== undefined ? keysFromWire(tr.keys) : undefined;
  const check = requestCheck(m);
  let told = 0;
  return (_m, owner) =>
    new RedisServerEnd({
      url: tr.url,
      namespace: tr.namespace,
      servers,
      page_size_bytes: m.config.page_size_bytes,
      consumer: `dm-${owner}-${threadId}`,
      ...(keys !== undefined ? { keys } : {}),
      check,
      onReject: (why) => {
        Atomics.add(m.control.w, CTL.TRANSPORT_REJECTED, 1);
        if (told++ < REJECT_EVENTS_MAX) m.log.event(`redis transport: device model of d${owner} refused ${why}`);
      },
      untilStop: () => untilStop(m),
    });
}

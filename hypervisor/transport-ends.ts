/**
 * Which transport end a device model gets: the host chooses the transport
 * (`--transport`); the device model only sees IoreqServerEnd.
 */
import type { Machine } from './machine.js';
import type { IoreqServerEnd } from './public/ioreq.js';
import { RingServerEnd } from '../transport/ring.js';

export type ServerEndFactory = (m: Machine, owner: number) => IoreqServerEnd;

let factory: ServerEndFactory = (m, owner) => new RingServerEnd(m, owner);

/** Installed by the vCPU worker when the host runs the redis transport. */
export function setServerEndFactory(f: ServerEndFactory): void {
  factory = f;
}

export function makeServerEnd(m: Machine, owner: number): IoreqServerEnd {
  return factory(m, owner);
}

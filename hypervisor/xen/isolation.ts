/**
 * The isolation oracle's question, asked where a domain reaches a frame:
 * may it (layout/reach.ts)? A reach no right explains is an `isolation`
 * violation; a frame whose rights overflowed the table is not judged. xgsim's
 * own, no Xen counterpart: Xen has nothing that watches itself like this.
 */
import type { Machine } from './machine.js';

export function checkReach(m: Machine, d: number, mfn: number, what: string): void {
  const ok = m.reach.may(mfn, d);
  if (ok === false) m.log.violated('isolation', `d${d} ${what} mfn ${mfn}, which no right of d's explains (rights: ${m.reach.describe(mfn)})`);
}

/**
 * Keys the toolstack writes into a domain's part of the shared "xenstore"
 * words (GuestCpu.store) and the guest reads with Atomics.load — as xl
 * writes `memory/target` and a balloon driver watches it. The top of the
 * store belongs to the toolstack; the words below are the guests' mailbox.
 */

/** The store's size and the machine's domain limit (hypervisor/layout/constants.ts asserts they agree). */
export const XS_STORE_WORDS = 64 * 1024;
export const XS_MAX_DOMAINS = 128;

export const XS_KEY = {
  /** Extra MMU-notifier evictions per second dom0's kernel must make (memory pressure); 0 when none. */
  MEMORY_PRESSURE: 0,
  /** 1 once an adversary workload that starts dormant is switched on. */
  ADVERSARY_ON: 1,
  /**
   * Non-zero while the backend's device model misbehaves (sim nemesis
   * dm-retry-storm): it answers every FAULT ioreq with RETRY, as a buggy or
   * compromised device model might (XSA-262 class: the hypervisor must bound
   * what a device model's answers make it do).
   */
  DM_RETRY_STORM: 2,
  /**
   * 1 once the toolstack has destroyed the domain (Xen's @releaseDomain
   * watch fires): its backends release what they still hold for it.
   */
  RELEASED: 3,
} as const;
const XS_KEY_WORDS = 4;
const XS_TOOLSTACK_BASE = XS_STORE_WORDS - XS_MAX_DOMAINS * XS_KEY_WORDS;

/** The word of `key` for domain `domid` in the store. */
export function xsKey(domid: number, key: number): number {
  return XS_TOOLSTACK_BASE + domid * XS_KEY_WORDS + key;
}

/** Guest-side read of a toolstack key. */
export function xsRead(store: Int32Array, domid: number, key: number): number {
  return Atomics.load(store, xsKey(domid, key));
}

/**
 * Grant offers between guests, kept in the shared "xenstore" words the
 * toolstack gives every guest. Per granter domain, per vCPU, SLOTS slots:
 * STATE (EMPTY → OFFERED by the granter → TAKEN by a mapper, CAS → DONE by
 * the mapper → EMPTY by the granter after end_access), TO, REF, VALUE, RO,
 * BAD (1: the grant names a frame the granter does not have, so every map
 * or copy of it must be refused, and leave the entry free to end).
 */
export const SLOTS = 4;
export const SLOT_WORDS = 8;
export const MAX_VCPUS_SEEN = 8;
export const DOM_WORDS = MAX_VCPUS_SEEN * SLOTS * SLOT_WORDS;
export const MB = { STATE: 0, TO: 1, REF: 2, VALUE: 3, RO: 4, BAD: 5 } as const;
export const ST = { EMPTY: 0, OFFERED: 1, TAKEN: 2, DONE: 3 } as const;
/** Grant refs below this are the guest's own (Linux: GNTTAB_NR_RESERVED_ENTRIES). */
export const FIRST_REF = 8;

export function slotBase(domid: number, vcpu: number, k: number): number {
  return domid * DOM_WORDS + (vcpu * SLOTS + k) * SLOT_WORDS;
}
export function slotRef(vcpu: number, k: number): number {
  return FIRST_REF + vcpu * SLOTS + k;
}

/**
 * Branded scalar kinds of the guest ABI. A number is a Gfn only because a
 * function said so; mixing a Gfn and an Mfn is a type error.
 */
export type Brand<T, B extends string> = T & { readonly __brand: B };
export type Gfn = Brand<number, 'Gfn'>;
export type Mfn = Brand<number, 'Mfn'>;
export type DomId = Brand<number, 'DomId'>;
export type VcpuId = Brand<number, 'VcpuId'>;
export type GrantRef = Brand<number, 'GrantRef'>;
export type GrantHandle = Brand<number, 'GrantHandle'>;

export const gfn = (n: number): Gfn => n as Gfn;
export const mfn = (n: number): Mfn => n as Mfn;
export const domid = (n: number): DomId => n as DomId;
export const vcpuid = (n: number): VcpuId => n as VcpuId;
export const grantRef = (n: number): GrantRef => n as GrantRef;
export const grantHandle = (n: number): GrantHandle => n as GrantHandle;

/** DOMID_SELF etc. as in xen.h. */
export const DOMID_SELF = 0x7ff0 as DomId;
export const DOMID_INVALID = 0x7ff4 as DomId;

/** p2m types, values as Xen's p2m_type_t (xen/arch/x86/include/asm/p2m.h). */
export const P2M = {
  ram_rw: 0,
  invalid: 1,
  ram_logdirty: 2,
  ram_ro: 3,
  mmio_dm: 4,
  mmio_direct: 5,
  populate_on_demand: 6,
  grant_map_rw: 7,
  grant_map_ro: 8,
  ram_paging_out: 9,
  ram_paged: 10,
  ram_paging_in: 11,
  ram_shared: 12,
  ram_broken: 13,
  map_foreign: 14,
  ioreq_server: 15,
} as const;
export type P2mType = (typeof P2M)[keyof typeof P2M];
export type P2mTypeName = keyof typeof P2M;
export const P2M_NAMES: readonly string[] = Object.keys(P2M);

/** Grant entry v1 flags (xen/include/public/grant_table.h). */
export const GTF_invalid = 0;
export const GTF_permit_access = 1;
export const GTF_accept_transfer = 2;
export const GTF_type_mask = 3;
export const GTF_readonly = 1 << 2;
export const GTF_reading = 1 << 3;
export const GTF_writing = 1 << 4;
/** v2 sub-page grants; in a v1 entry, a map (not a copy) refuses it (_set_status_v1's mask). */
export const GTF_sub_page = 1 << 8;

/** Grant map flags. */
export const GNTMAP_host_map = 1 << 1;
export const GNTMAP_readonly = 1 << 2;

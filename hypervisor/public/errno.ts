/**
 * Xen status codes, as the guest sees them (xen/include/public/errno.h and
 * grant_table.h). Hypercalls return 0 (or a count) or a negative errno;
 * grant ops return a GNTST_* code per op.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const ENXIO = 6;
export const E2BIG = 7;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ERANGE = 34;
export const EOPNOTSUPP = 95;

export const ERRNO_NAMES: Readonly<Record<number, string>> = {
  [EPERM]: 'EPERM', [ENOENT]: 'ENOENT', [ESRCH]: 'ESRCH', [ENXIO]: 'ENXIO', [E2BIG]: 'E2BIG', [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM', [EACCES]: 'EACCES', [EFAULT]: 'EFAULT', [EBUSY]: 'EBUSY', [EEXIST]: 'EEXIST',
  [EINVAL]: 'EINVAL', [ENOSPC]: 'ENOSPC', [ERANGE]: 'ERANGE', [EOPNOTSUPP]: 'EOPNOTSUPP',
};

export const GNTST_okay = 0;
export const GNTST_general_error = -1;
export const GNTST_bad_domain = -2;
export const GNTST_bad_gntref = -3;
export const GNTST_bad_handle = -4;
export const GNTST_bad_virt_addr = -5;
export const GNTST_bad_dev_addr = -6;
export const GNTST_no_device_space = -7;
export const GNTST_permission_denied = -8;
export const GNTST_bad_page = -9;
export const GNTST_bad_copy_arg = -10;
export const GNTST_address_too_big = -11;
export const GNTST_eagain = -12;
/** Out of space (maptrack handles): Xen 4.16 and later; older Xen said GNTST_no_device_space. */
export const GNTST_no_space = -13;

export const GNTST_NAMES: Readonly<Record<number, string>> = {
  [GNTST_okay]: 'GNTST_okay', [GNTST_general_error]: 'GNTST_general_error',
  [GNTST_bad_domain]: 'GNTST_bad_domain', [GNTST_bad_gntref]: 'GNTST_bad_gntref',
  [GNTST_bad_handle]: 'GNTST_bad_handle', [GNTST_bad_virt_addr]: 'GNTST_bad_virt_addr',
  [GNTST_bad_dev_addr]: 'GNTST_bad_dev_addr', [GNTST_no_device_space]: 'GNTST_no_device_space',
  [GNTST_permission_denied]: 'GNTST_permission_denied', [GNTST_bad_page]: 'GNTST_bad_page',
  [GNTST_bad_copy_arg]: 'GNTST_bad_copy_arg', [GNTST_address_too_big]: 'GNTST_address_too_big',
  [GNTST_eagain]: 'GNTST_eagain', [GNTST_no_space]: 'GNTST_no_space',
};

/** Name of a hypercall status: 'OK', an errno name, or a count. */
export function statusName(rc: number): string {
  if (rc === 0) return 'OK';
  if (rc < 0) return ERRNO_NAMES[-rc] ?? `errno ${-rc}`;
  return String(rc);
}

export function gntstName(rc: number): string {
  return GNTST_NAMES[rc] ?? `GNTST ${rc}`;
}

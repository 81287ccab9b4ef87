/**
 * Scenario steps as guest programs: each op runs on a GuestCpu of the
 * domain that issues it, through the public ABI only — the same code on the
 * main thread (sequential steps) and on vCPU threads (`concurrently`).
 * Names (Map ids, grant handles) live in a table the caller passes.
 */
import { ACCESS, type AccessWidth, type CopyPtr, type GuestCpu, type MapType, type MemType } from '../hypervisor/public/guest.js';
import { EBUSY, ENOENT } from '../hypervisor/public/errno.js';
import { domid, gfn, grantHandle, grantRef } from '../hypervisor/public/types.js';

export type Ref = { kind: 'name'; name: string } | { kind: 'raw'; value: number };

/** One side of a GNTTABOP_copy step: a grant ref of another domain, or a gfn of the caller. */
export type CopySide = { kind: 'ref'; dom: number; ref: number; offset: number } | { kind: 'gfn'; gfn: number; offset: number };

export type GuestOp =
  | { op: 'populate' | 'balloon_out'; gfn: number; count: number }
  | { op: 'grant'; ref: number; to: number; gfn: number; readonly: boolean }
  | { op: 'end_grant'; ref: number }
  | { op: 'map_grant'; from: number; ref: number; at: number; readonly: boolean; name?: string }
  | { op: 'unmap_grant'; handle?: Ref; at?: number }
  | { op: 'grant_copy'; src: CopySide; dst: CopySide; len: number }
  | { op: 'foreign_map'; from: number; gfn: number; at: number }
  | { op: 'foreign_unmap'; at: number }
  | { op: 'map'; fe: number; source: { kind: 'ram'; gfn: number } | { kind: 'bar'; mfn: number }; count: number; at: number; type: MapType; name?: string }
  | { op: 'revoke'; target: { kind: 'id'; id: Ref } | { kind: 'range'; fe: number; gfn: number; count: number } }
  | { op: 'steal'; fe: number; gfn: number; count: number; into?: number; name?: string }
  | { op: 'return'; fe: number; gfn: number; count: number; at?: number }
  | { op: 'read'; gfn: number; offset: number; width: AccessWidth }
  | { op: 'write'; gfn: number; offset: number; width: AccessWidth; value: bigint }
  | { op: 'hypercall_copy'; gfn: number; dir: 'from_guest' | 'to_guest'; bytes: number }
  | { op: 'dma_read'; gfn: number; offset: number }
  | { op: 'dma_write'; gfn: number; offset: number; value: number }
  | { op: 'iomem_permit'; dom: number; start: number; count: number; allow: boolean }
  | { op: 'current_reservation' | 'maximum_reservation'; of?: number }
  | { op: 'set_mem_type'; fe: number; gfn: number; count: number; type: MemType }
  | { op: 'ioreq_server'; fe: number; ranges: Array<{ start: number; count: number }>; policy: 'remap' | 'fail' | 'none' | 'retry'; name?: string }
  | { op: 'set_ioreq_server_state'; fe: number; id: Ref; enabled: boolean }
  | { op: 'destroy'; dom: number }
  | { op: 'crash' };

/** iommu_fault: a DMA of the domain's passthrough device that its IOMMU refused. */
export type Access = 'ok' | 'null_io' | 'fault' | 'ioreq' | 'gp' | 'iommu_fault';
export type OpOutcome =
  | { kind: 'rc'; rc: number }
  | { kind: 'gntst'; status: number }
  | { kind: 'read'; value: bigint; access: Access }
  | { kind: 'write'; access: Access }
  /** A memory_op (populate, balloon_out): `done` of `count` extents (Xen's nr_done). */
  | { kind: 'extents'; done: number; count: number }
  /** A reservation (XENMEM_current_reservation, XENMEM_maximum_reservation), in pages. */
  | { kind: 'pages'; value: number };

/** Names made by steps: Map ids, grant handles; `@d:gfn` → the grant handle mapped there. */
export type Names = Map<string, number>;

function access(cpu: GuestCpu): Access {
  switch (cpu.last_access) {
    case ACCESS.OK:
      return 'ok';
    case ACCESS.NULL_IO:
      return 'null_io';
    case ACCESS.IOREQ:
      return 'ioreq';
    case ACCESS.IOREQ_FAULT:
      return 'fault';
    default:
      return 'gp';
  }
}

function resolve(ref: Ref, names: Names): number | undefined {
  return ref.kind === 'raw' ? ref.value : names.get(ref.name);
}

/** memory_op reports the extents done (a negative errno only under the memop-errno-per-call bug). */
function extents(done: number, count: number): OpOutcome {
  return done < 0 ? { kind: 'rc', rc: done } : { kind: 'extents', done, count };
}

export function execGuestOp(cpu: GuestCpu, op: GuestOp, names: Names): OpOutcome {
  const me = cpu.domid as number;
  const rc = (n: number): OpOutcome => ({ kind: 'rc', rc: n });
  const range = (first: number, count: number) => Array.from({ length: count }, (_, i) => gfn(first + i));
  switch (op.op) {
    case 'populate':
      return extents(cpu.hc.populate_physmap(range(op.gfn, op.count)), op.count);
    case 'balloon_out':
      return extents(cpu.hc.decrease_reservation(range(op.gfn, op.count)), op.count);
    case 'grant':
      cpu.grants.grant_access(grantRef(op.ref), domid(op.to), gfn(op.gfn), op.readonly);
      return rc(0);
    case 'end_grant':
      return rc(cpu.grants.end_access(grantRef(op.ref)) ? 0 : -EBUSY);
    case 'map_grant': {
      const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(op.from), ref: grantRef(op.ref), host_gfn: gfn(op.at), readonly: op.readonly });
      if (r.status === 0) {
        if (op.name !== undefined) names.set(op.name, r.handle as number);
        names.set(`@${me}:${op.at}`, r.handle as number);
      }
      return { kind: 'gntst', status: r.status };
    }
    case 'unmap_grant': {
      const h = op.handle !== undefined ? resolve(op.handle, names) : op.at !== undefined ? names.get(`@${me}:${op.at}`) : undefined;
      const st = cpu.hc.gnttab_unmap_grant_ref(grantHandle(h ?? -1));
      if (st === 0 && op.at !== undefined) names.delete(`@${me}:${op.at}`);
      return { kind: 'gntst', status: st };
    }
    case 'grant_copy': {
      const side = (s: CopySide): CopyPtr =>
        s.kind === 'ref' ? { kind: 'ref', domid: domid(s.dom), ref: grantRef(s.ref), offset: s.offset } : { kind: 'gfn', gfn: gfn(s.gfn), offset: s.offset };
      return { kind: 'gntst', status: cpu.hc.gnttab_copy({ src: side(op.src), dst: side(op.dst), len: op.len }) };
    }
    case 'foreign_map':
      return rc(cpu.hc.foreign_map(domid(op.from), gfn(op.gfn), gfn(op.at)));
    case 'foreign_unmap':
      return rc(cpu.hc.remove_from_physmap(gfn(op.at)));
    case 'map': {
      const src = op.source.kind === 'ram' ? { kind: 'ram' as const, gfn: gfn(op.source.gfn) } : op.source;
      const r = cpu.hc.dm_map(domid(op.fe), src, op.count, gfn(op.at), op.type);
      if (r.rc === 0 && op.name !== undefined) names.set(op.name, r.id);
      return rc(r.rc);
    }
    case 'revoke': {
      if (op.target.kind === 'id') {
        const id = resolve(op.target.id, names);
        return rc(id === undefined ? -ENOENT : cpu.hc.dm_revoke({ id }));
      }
      return rc(cpu.hc.dm_revoke({ fe: domid(op.target.fe), gfn: gfn(op.target.gfn), count: op.target.count }));
    }
    case 'steal': {
      const r = cpu.hc.dm_steal(domid(op.fe), gfn(op.gfn), op.count, op.into === undefined ? undefined : gfn(op.into));
      if (r.rc === 0 && op.name !== undefined) names.set(op.name, r.id);
      return rc(r.rc);
    }
    case 'return':
      return rc(cpu.hc.dm_return(domid(op.fe), gfn(op.gfn), op.count, op.at === undefined ? undefined : gfn(op.at)).rc);
    case 'read': {
      const value = cpu.read(gfn(op.gfn), op.offset, op.width);
      return { kind: 'read', value, access: access(cpu) };
    }
    case 'write':
      cpu.write(gfn(op.gfn), op.offset, op.width, op.value);
      return { kind: 'write', access: access(cpu) };
    case 'hypercall_copy':
      return rc(cpu.hc.buffer_copy(op.dir, gfn(op.gfn), 0, op.bytes));
    case 'dma_read': {
      const r = cpu.dma_read32(gfn(op.gfn), op.offset);
      return { kind: 'read', value: BigInt(r.value), access: r.ok ? 'ok' : 'iommu_fault' };
    }
    case 'dma_write':
      return { kind: 'write', access: cpu.dma_write32(gfn(op.gfn), op.offset, op.value).ok ? 'ok' : 'iommu_fault' };
    case 'iomem_permit':
      return rc(cpu.hc.domctl_iomem_permission(domid(op.dom), op.start, op.count, op.allow));
    case 'current_reservation':
    case 'maximum_reservation': {
      const dom = op.of === undefined ? undefined : domid(op.of);
      const n = op.op === 'current_reservation' ? cpu.hc.current_reservation(dom) : cpu.hc.maximum_reservation(dom);
      return n < 0 ? rc(n) : { kind: 'pages', value: n };
    }
    case 'set_mem_type':
      return rc(cpu.hc.dm_set_mem_type(domid(op.fe), gfn(op.gfn), op.count, op.type));
    case 'ioreq_server': {
      const r = cpu.hc.dm_create_ioreq_server(domid(op.fe), op.ranges, op.policy);
      if (r >= 0 && op.name !== undefined) names.set(op.name, r);
      return rc(r < 0 ? r : 0);
    }
    case 'set_ioreq_server_state': {
      const id = resolve(op.id, names);
      return rc(id === undefined ? -ENOENT : cpu.hc.dm_set_ioreq_server_state(domid(op.fe), id, op.enabled));
    }
    case 'destroy':
      return rc(cpu.hc.domctl_destroy(domid(op.dom)));
    case 'crash':
      return rc(cpu.hc.sched_crash());
  }
}

export function describeOutcome(o: OpOutcome): string {
  switch (o.kind) {
    case 'rc':
      return o.rc === 0 ? 'OK' : `rc ${o.rc}`;
    case 'gntst':
      return `GNTST ${o.status}`;
    case 'read':
      return `${o.access} 0x${o.value.toString(16)}`;
    case 'write':
      return o.access;
    case 'extents':
      return o.done === o.count ? 'OK' : `${o.done} of ${o.count} done`;
    case 'pages':
      return `${o.value} pages`;
  }
}

/**
 * The IOREQ ABI (xen/include/public/hvm/ioreq.h), as a device model sees it,
 * plus the server end a device model is handed by the machine.
 */
export const IOREQ_STATE = { NONE: 0, READY: 1, INPROCESS: 2, IORESP_READY: 3 } as const;
export const IOREQ_TYPE = {
  PIO: 0,
  COPY: 1, // MMIO
  PCI_CONFIG: 2,
  TIMEOFFSET: 7,
  INVALIDATE: 8,
  /**
   * New in xgsim: an access to a revoked gfn (in the server's FAULT set).
   * The next value Xen leaves free after IOREQ_TYPE_INVALIDATE.
   */
  FAULT: 9,
} as const;
export const IOREQ_DIR = { WRITE: 0, READ: 1 } as const;

/** What a server answers to a FAULT ioreq. */
export const FAULT_ANSWER = {
  /** Reads all ones, writes dropped (policy `none`). */
  NONE: 0,
  /** The access fails; the guest sees the error (policy `fail`). */
  FAIL: 1,
  /** The server mapped something at the gfn again; the access is retried (policy `remap`). */
  RETRY: 2,
} as const;

export interface IoreqRequest {
  /** Frontend and vCPU that made the access. */
  domid: number;
  vcpu: number;
  /**
   * Per-vCPU sequence number: (domid, vcpu, seq) names one ioreq for ever.
   * A buffered ioreq's is its position in the server's buffered ring
   * instead: (domid, server, seq) names it.
   */
  seq: number;
  /**
   * A posted write from the server's buffered ring (Xen's buf_ioreq_t): the
   * vCPU did not wait for it. Apply it, then `respond` (any answer): that
   * tells the transport it was applied, which frees its place in the ring.
   * Buffered ioreqs of a server come in position order, and before any
   * synchronous ioreq made after them.
   */
  buffered?: boolean;
  /** Index of the server among the frontend's servers. */
  server: number;
  type: number;
  dir: number;
  gfn: number;
  offset: number;
  size: number;
  data: number;
}

export interface IoreqAnswer {
  data: number;
  /** For FAULT ioreqs: FAULT_ANSWER.*. */
  fault: number;
}

/** The device model's end of the IOREQ transport. */
export interface IoreqServerEnd {
  readonly kind: 'ring' | 'redis';
  /** Requests for the servers this end serves; waits up to `block_ms` for the first. */
  recv(max: number, block_ms: number): Promise<IoreqRequest[]>;
  /** Answer a request (exactly once; a duplicate answer is dropped). */
  respond(req: IoreqRequest, answer: IoreqAnswer): Promise<void>;
  /**
   * The answer already given to this request, if any (a duplicate, or one a
   * restarted device model took over): the device model must not apply it twice.
   */
  answered?(req: IoreqRequest): Promise<IoreqAnswer | undefined>;
  /**
   * Transport internal (chaos `ioreq-drop`): forget a delivered request
   * without answering it; the transport must deliver it again later.
   */
  drop?(req: IoreqRequest): void;
  /**
   * A polled end (the deterministic simulator's, hypervisor/sim): `recvNow`
   * returns what is there now, possibly nothing, synchronously and never
   * blocking. Present only on such an end; a device model that finds it
   * serves one batch per step without awaiting.
   */
  recvNow?(max: number): IoreqRequest[];
  /**
   * The hot path of an end that has one (the ring): the requests there now
   * or, while the end is hot (its device model answering back-to-back
   * ioreqs), arriving within its short spin window; synchronous, never
   * parks. Empty: go back to `recv`, which parks. Call it descheduled
   * (`GuestCpu.idleNow`), and answer with `respondNow`, without awaiting.
   */
  recvHot?(max: number): IoreqRequest[];
  /** `respond` and `answered`, synchronous: on the polled end, and on an end with `recvHot`. */
  respondNow?(req: IoreqRequest, answer: IoreqAnswer): void;
  answeredNow?(req: IoreqRequest): IoreqAnswer | undefined;
  close(): Promise<void>;
}

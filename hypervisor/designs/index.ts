/**
 * Every memory-sharing design xgsim runs, registered with the Xen core
 * (xen/design.ts) when this module loads. Each thread that runs hypervisor
 * code imports it once, before it builds or attaches a Machine: the host's
 * main thread, the vCPU and scenario workers, the simulator, the bench and
 * the tests. A design lives in a folder of its own here and imports only
 * the Xen core (xen/, layout/) and the ABI (public/).
 */
import { registerDesign } from '../xen/design.js';
import { grants } from './grants/index.js';
import { lending } from './lending/index.js';
import { pinnedUserptr } from './pinned-userptr/index.js';
import { primitives } from './primitives/index.js';

export const DESIGNS = [primitives, grants, pinnedUserptr, lending] as const;

/** The names a topology's `design:` may take (orchestrator/config/topology.ts). */
export const DESIGN_NAMES: readonly string[] = DESIGNS.map((d) => d.name);

for (const d of DESIGNS) registerDesign(d);

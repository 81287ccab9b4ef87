import { Host } from '../hypervisor/host/host.js';
import { parseBuggify } from '../hypervisor/xen/buggify.js';
const spec = {
  nr_frames: 16384, page_size_bytes: 4096, seed: 1, checking: true, buggify: parseBuggify(process.env.BUGS), check_interval_ms: Number(process.env.CI_MS ?? 200),
  domains: [
    { name: 'dom0', domid: 0, role: 'backend' as const, memory_pages: 2048, max_pages: 2048, vcpus: 2, privileged: true, devices: [{ name: 'gpu0', bar_pages: 64 }], workload: { kind: 'grant-ping' }, peers: [] },
    { name: 'g1', domid: 1, role: 'frontend' as const, memory_pages: 2048, max_pages: 2048, vcpus: 2, privileged: false, devices: [], workload: { kind: 'grant-ping' }, peers: [2] },
    { name: 'g2', domid: 2, role: 'frontend' as const, memory_pages: 2048, max_pages: 2048, vcpus: 2, privileged: false, devices: [], workload: { kind: 'grant-ping' }, peers: [1] },
  ],
};
const h = new Host(spec);
h.boot();
h.start();
await new Promise((r) => setTimeout(r, Number(process.env.MS ?? 3000)));
const rep = await h.shutdown();
console.log(JSON.stringify({ ...rep, vcpu_results: rep.vcpu_results.length }, null, 1));

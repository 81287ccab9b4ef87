/**
 * The raw stream round trip's server on a thread of its own
 * (rawStreamRoundTrip's `across`): it posts a message once it is about to
 * block in its first read, and serves until told to stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serveFloor, type FloorServerData } from './raw-floor.js';

const d = workerData as FloorServerData;
await serveFloor(d.url, d.keys, d.stop, () => parentPort?.postMessage('ready'));

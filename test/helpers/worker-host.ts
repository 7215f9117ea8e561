// A real worker process outside node:cluster, driven by a test acting as the primary
// (snapshot/delta messages over the same 'advanced' IPC channel).
import { runWorker } from '../../src/worker/worker';

runWorker();

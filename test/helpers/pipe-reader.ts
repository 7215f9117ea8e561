// Child process for snapshot-pipe.test.ts: reads the sizes it is sent over IPC from its snapshot
// pipe (fd 5), one after the other, and answers each with the sha256 of the bytes it read.
import { createHash } from 'node:crypto';
import { SnapshotPipe } from '../../src/worker/snapshot-pipe';

const pipe = new SnapshotPipe();
let queue: Promise<void> = Promise.resolve();
process.on('message', (m: { size: number }) => {
  queue = queue.then(async () => {
    try {
      const b = await pipe.read(m.size);
      process.send!({ size: b.length, sha: createHash('sha256').update(b).digest('hex') });
    } catch (err) {
      process.send!({ error: (err as Error).message });
    }
  });
});
process.on('disconnect', () => process.exit(0));

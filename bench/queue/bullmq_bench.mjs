// BullMQ peer for bench/queue: N `add` jobs enqueued in bulk, then drained by a Worker with
// concurrency 50 (results stored by BullMQ in each job's hash, as it does by default).
// Prints one JSON line: {"n", "drain_s", "tasks_per_s"}.
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const [port, n] = [Number(process.argv[2]), Number(process.argv[3])];
const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
const queue = new Queue('bench', { connection });
await queue.obliterate({ force: true });

for (let i = 0; i < n; i += 1000) {
  const jobs = [];
  for (let j = i; j < Math.min(n, i + 1000); j++) jobs.push({ name: 'add', data: { x: j, y: 1 } });
  await queue.addBulk(jobs);
}

// Timed from the first completed job, as the other workers are (start-up excluded).
let done = 0;
let first = 0n;
const finished = new Promise((resolve) => {
  const worker = new Worker('bench', async (job) => job.data.x + job.data.y,
                            { connection, concurrency: 50 });
  worker.on('completed', () => {
    if (++done === 1) first = process.hrtime.bigint();
    if (done === n) resolve(worker);
  });
});
const worker = await finished;
const drain = Number(process.hrtime.bigint() - first) / 1e9;
await worker.close();
await queue.close();
console.log(JSON.stringify({ n, drain_s: drain, tasks_per_s: (n - 1) / drain }));
process.exit(0);

// The chatwire-bench scenarios against Socket.IO 4.8 (from npm), for docs/benchmarks.md:
// idle sessions (server RSS per connection), then one room with --subscribers members counting
// live deliveries while --clients senders each send --messages messages, one at a time, each
// waiting for its acknowledgement. Server CPU and RSS come from /proc of the server process.
//
//   node bench/peers/socketio.mjs --subscribers 1000 --clients 4 --messages 250 [--idle 10000]
//
// Socket.IO's acknowledgement means "broadcast", not "stored": it keeps no history.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith('--')) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const subscribers = Number(args.subscribers ?? 1);
const senders = Number(args.clients ?? 16);
const messages = Number(args.messages ?? 200);
const idleCount = Number(args.idle ?? 0);
const size = Number(args.size ?? 100);

const here = dirname(fileURLToPath(import.meta.url));
const server = spawn(process.execPath, [join(here, 'socketio-server.mjs')], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const port = await new Promise((resolve, reject) => {
  server.stdout.on('data', (chunk) => {
    const match = /listening (\d+)/.exec(String(chunk));
    if (match) resolve(Number(match[1]));
  });
  server.on('exit', (code) => reject(new Error(`server exited ${code}`)));
});

const cpuSeconds = () => {
  const stat = readFileSync(`/proc/${server.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const rssKib = () => {
  const status = readFileSync(`/proc/${server.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
};
const open = () =>
  new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false });
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });

const rssBefore = rssKib();
const idle = [];
for (let i = 0; i < idleCount; i++) idle.push(await open());
if (idleCount > 0) {
  const after = rssKib();
  console.log(
    `idle: ${idleCount} sessions, server RSS ${rssBefore} -> ${after} KiB: ${((after - rssBefore) / idleCount).toFixed(1)} KiB per connection`,
  );
}

const room = 'bench';
const total = senders * messages;
const counts = [];
const readers = [];
for (let i = 0; i < subscribers; i++) {
  const socket = await open();
  await socket.emitWithAck('join', room);
  const seen = { delivered: 0 };
  socket.on('msg', () => {
    seen.delivered += 1;
  });
  counts.push(seen);
  readers.push(socket);
}
const writers = [];
for (let i = 0; i < senders; i++) writers.push(await open());

const cpuBefore = cpuSeconds();
const started = process.hrtime.bigint();
const body = 'x'.repeat(size);
const latencies = [];
await Promise.all(
  writers.map(async (socket) => {
    for (let m = 0; m < messages; m++) {
      const sent = process.hrtime.bigint();
      await socket.emitWithAck('msg', room, body);
      latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
    }
  }),
);
const acked = Number(process.hrtime.bigint() - started) / 1e9;
const expected = total * subscribers;
const delivered = () => counts.reduce((sum, c) => sum + c.delivered, 0);
// Deliveries still in flight after the last acknowledgement: wait for them (bounded).
const deadline = Date.now() + 60_000;
while (delivered() < expected && Date.now() < deadline) await new Promise((r) => setImmediate(r));
const wall = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = cpuSeconds() - cpuBefore;
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.round((latencies.length - 1) * p)] ?? 0;
console.log(`senders ${senders} x messages ${messages} (${size} B text), ${subscribers} subscribers`);
console.log(`acknowledged ${latencies.length} in ${acked.toFixed(2)} s: ${(latencies.length / acked).toFixed(0)} msg/s`);
console.log(
  `ack latency ms: p50 ${pct(0.5).toFixed(2)}  p95 ${pct(0.95).toFixed(2)}  p99 ${pct(0.99).toFixed(2)}  max ${pct(1).toFixed(2)}`,
);
console.log(
  `deliveries: ${delivered()} of ${expected} in ${wall.toFixed(2)} s (${(delivered() / wall).toFixed(0)}/s wall); lost ${expected - delivered()}`,
);
console.log(`server CPU ${cpu.toFixed(2)} s: ${(delivered() / Math.max(cpu, 0.01)).toFixed(0)} deliveries per server-CPU-second`);
for (const socket of [...idle, ...readers, ...writers]) socket.close();
server.kill();

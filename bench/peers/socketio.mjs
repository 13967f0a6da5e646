// The chatwire-bench scenarios against Socket.IO 4.8 (from npm), for docs/benchmarks.md:
// idle sessions (server RSS per connection), then one room with --subscribers members counting
// live deliveries while --clients senders each send --messages messages, one at a time, each
// waiting for its acknowledgement. Server CPU and RSS come from /proc of the server process.
//
//   node bench/peers/socketio.mjs --subscribers 1000 --clients 4 --messages 250 [--idle 10000]
//
// Socket.IO's acknowledgement means "broadcast", not "stored": it keeps no history.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import { measure, openIdle, settings } from './common.mjs';

const s = settings(process.argv.slice(2));

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

const open = () =>
  new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false });
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });

const idle = await openIdle(server.pid, s.idle, open);
const room = 'bench';
const counts = [];
const readers = [];
for (let i = 0; i < s.subscribers; i++) {
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
for (let i = 0; i < s.senders; i++) writers.push(await open());

await measure({
  pid: server.pid,
  writers,
  send: (socket, body) => socket.emitWithAck('msg', room, body),
  delivered: () => counts.reduce((sum, c) => sum + c.delivered, 0),
  settings: s,
});
for (const socket of [...idle, ...readers, ...writers]) socket.close();
server.kill();

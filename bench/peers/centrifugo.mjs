// The chatwire-bench scenarios against Centrifugo v6 (installed with `go install`, see
// scripts/bench-peers), for docs/benchmarks.md: memory engine, HMAC JWT, client publish
// allowed, history of 100 per channel; clients speak its JSON protocol over WebSocket (ws).
// Idle sessions (server RSS per connection), then one channel with --subscribers subscribers
// counting live deliveries while --clients senders each publish --messages messages, one at a
// time, each waiting for its reply. Server CPU and RSS come from /proc of the server process.
//
//   node bench/peers/centrifugo.mjs --binary PATH --subscribers 1000 --clients 4 --messages 250
//
// Centrifugo's publish reply means "accepted into the in-memory broker", not "stored durably".
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { measure, openIdle, settings } from './common.mjs';

const s = settings(process.argv.slice(2));
const { args } = s;
const secret = 'chatwire-bench-secret';

// Centrifugo takes a port number, not 0: ask the kernel for a free one first.
const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'centrifugo-bench-'));
writeFileSync(
  join(dir, 'config.json'),
  JSON.stringify({
    http_server: { address: '127.0.0.1', port },
    log: { level: 'error' },
    client: { token: { hmac_secret_key: secret }, allowed_origins: ['*'] },
    channel: {
      without_namespace: {
        allow_subscribe_for_client: true,
        allow_publish_for_subscriber: true,
        history_size: 100,
        history_ttl: '300s',
      },
    },
  }),
);
const server = spawn(args.binary, ['-c', join(dir, 'config.json')], {
  cwd: dir,
  stdio: ['ignore', 'inherit', 'inherit'],
});

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const token = (user) => {
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
};
/** One connected client: commands with ids, replies matched, pushes counted. */
class Conn {
  static async open(user) {
    for (let attempt = 0; ; attempt++) {
      try {
        const conn = new Conn(new WebSocket(`ws://127.0.0.1:${port}/connection/websocket`));
        await new Promise((resolve, reject) => {
          conn.ws.once('open', resolve);
          conn.ws.once('error', reject);
        });
        await conn.call({ connect: { token: token(user) } });
        return conn;
      } catch (err) {
        // Only while the server starts.
        if (attempt > 100) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  constructor(ws) {
    this.ws = ws;
    this.next = 1;
    this.pending = new Map();
    this.pushes = 0;
    ws.on('message', (data) => {
      for (const line of String(data).split('\n')) {
        if (!line) continue;
        const frame = JSON.parse(line);
        if (frame.id && this.pending.has(frame.id)) {
          const { resolve, reject } = this.pending.get(frame.id);
          this.pending.delete(frame.id);
          if (frame.error) reject(new Error(JSON.stringify(frame.error)));
          else resolve(frame);
        } else if (frame.push?.pub) {
          this.pushes += 1;
        } else if (!frame.id && !frame.push) {
          ws.send('{}'); // a ping: answer with a pong
        }
      }
    });
  }

  call(command) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, ...command }));
    });
  }
}

await Conn.open('warmup');
const idle = await openIdle(server.pid, s.idle, (i) => Conn.open(`idle-${i}`));
const channel = 'bench';
const readers = [];
for (let i = 0; i < s.subscribers; i++) {
  const conn = await Conn.open(`reader-${i}`);
  await conn.call({ subscribe: { channel } });
  readers.push(conn);
}
const writers = [];
for (let i = 0; i < s.senders; i++) {
  const conn = await Conn.open(`sender-${i}`);
  await conn.call({ subscribe: { channel } }); // publishing needs a subscription here
  writers.push(conn);
}
await measure({
  pid: server.pid,
  writers,
  send: (conn, body) => conn.call({ publish: { channel, data: { text: body } } }),
  delivered: () => readers.reduce((sum, c) => sum + c.pushes, 0),
  settings: s,
});
for (const conn of [...idle, ...readers, ...writers]) conn.ws.terminate();
server.kill();

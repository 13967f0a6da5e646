#!/usr/bin/env node
// A reference client for `chatwire-conformance client-harness`, in Node with `ws` only (a
// hand-written protobuf subset, no generated code): it shows an SDK test's side of the protocol
// in docs/conformance.md and behaves as docs/protocol.md asks, so every scenario should pass.
//
//   node conformance/harness-drivers/reference-client.cjs [--harness target/debug/chatwire-conformance]
//        [--scenario NAME|all]
//
// `ws` must be resolvable (NODE_PATH=/path/to/node_modules works, this is CommonJS). Exit status
// 0 when every scenario passed. An SDK's own test does the same with the SDK instead of the
// `Session` below: spawn the harness, read its first line, run the script, await the exit.
'use strict';

const { spawn } = require('node:child_process');
const readline = require('node:readline');
const WebSocket = require('ws');

const SCENARIOS = ['drop-mid-request', 'ack-duplicated', 'seq-gap', 'duplicate-event',
  'token-expiring', 'server-draining', 'slow-reads'];

// ---- protobuf subset ------------------------------------------------------------------------

function varint(value) {
  let n = BigInt(value);
  const out = [];
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return Buffer.from(out);
}

// Fields: [number, value]; a Buffer or string is length-delimited, anything else a varint.
function encode(fields) {
  const parts = [];
  for (const [number, value] of fields) {
    if (value === undefined) continue;
    if (typeof value === 'string' || Buffer.isBuffer(value)) {
      const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
      parts.push(varint((number << 3) | 2), varint(bytes.length), bytes);
    } else {
      parts.push(varint(number << 3), varint(value));
    }
  }
  return Buffer.concat(parts);
}

function readVarint(buf, pos) {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = buf[pos++];
    if (byte === undefined) throw new Error('truncated varint');
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

// Decodes a message into a Map: field number -> [values] (BigInt or Buffer).
function decode(buf) {
  const fields = new Map();
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const number = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value;
    if (wire === 0) {
      [value, pos] = readVarint(buf, pos);
    } else if (wire === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      value = buf.subarray(pos, pos + Number(len));
      pos += Number(len);
    } else if (wire === 1) {
      value = buf.subarray(pos, pos + 8);
      pos += 8;
    } else if (wire === 5) {
      value = buf.subarray(pos, pos + 4);
      pos += 4;
    } else {
      throw new Error(`wire type ${wire}`);
    }
    if (!fields.has(number)) fields.set(number, []);
    fields.get(number).push(value);
  }
  return fields;
}

const first = (fields, number) => (fields.get(number) || [])[0];
const num = (fields, number) => Number(first(fields, number) || 0n);

// Request and result case numbers of ClientFrame.request / Reply.result (frames.proto).
const REQ = { connect: 10, refresh: 11, ping: 12, send: 40, subscribe: 51 };

function frame(id, requestField, body) {
  const message = encode([[1, id], [requestField, body]]);
  return Buffer.concat([varint(message.length), message]);
}

// ---- a minimal session ----------------------------------------------------------------------

class Session {
  constructor(url) {
    this.url = url;
    this.nextId = 1;
    this.pending = new Map();
    this.events = [];
    this.waiters = [];
    this.closed = false;
  }

  open(token) {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url, 'chatwire.v1');
      this.ws.on('open', () => this.call(REQ.connect, encode([[1, token]])).then((r) => {
        const limits = first(r.body, 5);
        this.maxInFlight = limits ? num(decode(limits), 8) : 64;
        resolve(this);
      }, reject));
      this.ws.on('message', (data) => this.onMessage(Buffer.from(data)));
      this.ws.on('close', () => this.onClose());
      this.ws.on('error', (err) => { if (!this.closed) reject(err); });
    });
  }

  call(requestField, body) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('closed'));
      this.pending.set(id, { resolve, reject });
      this.ws.send(frame(id, requestField, body));
    });
  }

  onMessage(buf) {
    let pos = 0;
    while (pos < buf.length) {
      let len;
      [len, pos] = readVarint(buf, pos);
      const server = decode(buf.subarray(pos, pos + Number(len)));
      pos += Number(len);
      const reply = first(server, 1);
      if (reply) this.onReply(decode(reply));
      const event = first(server, 2);
      if (event) this.onEvent(decode(event));
    }
  }

  onReply(reply) {
    const id = num(reply, 1);
    const waiter = this.pending.get(id);
    // A reply matching no pending request is ignored.
    if (!waiter) return;
    this.pending.delete(id);
    const error = first(reply, 2);
    if (error) return waiter.reject(Object.assign(new Error('error reply'), { code: num(decode(error), 1) }));
    for (const [field, values] of reply) {
      if (field !== 1) return waiter.resolve({ field, body: decode(values[0]) });
    }
    waiter.reject(new Error('empty reply'));
  }

  onEvent(event) {
    this.events.push(event);
    for (const wake of this.waiters.splice(0)) wake();
  }

  onClose() {
    this.closed = true;
    for (const { reject } of this.pending.values()) reject(new Error('closed'));
    this.pending.clear();
    for (const wake of this.waiters.splice(0)) wake();
  }

  async nextEvent() {
    while (this.events.length === 0) {
      if (this.closed) throw new Error('closed');
      await new Promise((wake) => this.waiters.push(wake));
    }
    return this.events.shift();
  }

  send(room, clientMsgId, text) {
    return this.call(REQ.send, encode([[1, room], [2, clientMsgId], [3, encode([[1, text]])]]));
  }

  async subscribe(room, afterSeq) {
    const page = await this.call(REQ.subscribe, encode([[1, room], [2, afterSeq]]));
    return (page.body.get(2) || []).map((e) => num(decode(e), 2));
  }

  close() {
    this.closed = true;
    this.ws.close(4012, 'done');
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jitter = (ms) => Math.floor(Math.random() * ms);

// ---- reference behaviours -------------------------------------------------------------------

// Applies each seq once, repairing gaps from the highest applied seq (R-10.5.1/2/4).
async function follow(session, room, last) {
  const applied = await session.subscribe(room, 0);
  const high = () => applied[applied.length - 1] || 0;
  while (high() < last) {
    const event = await session.nextEvent();
    const roomEvent = first(event, 1);
    if (!roomEvent) continue;
    const seq = num(decode(roomEvent), 2);
    if (seq <= high()) continue;
    if (seq > high() + 1) applied.push(...await session.subscribe(room, high()));
    else applied.push(seq);
  }
  return applied;
}

const behaviours = {
  async 'drop-mid-request'(ready) {
    const msgId = `cmid-${process.pid}`;
    let session = await new Session(ready.url).open('t');
    for (let attempt = 0; ; attempt++) {
      try {
        await session.send(ready.room_id, msgId, 'hello');
        return session;
      } catch (err) {
        // Unknown outcome: reconnect with full-jitter backoff, same client_msg_id.
        await sleep(jitter(Math.min(30000, 100 * 2 ** attempt)));
        session = await new Session(ready.url).open('t');
      }
    }
  },
  async 'ack-duplicated'(ready) {
    const session = await new Session(ready.url).open('t');
    await session.send(ready.room_id, `one-${process.pid}`, 'one');
    await session.send(ready.room_id, `two-${process.pid}`, 'two');
    return session;
  },
  async 'seq-gap'(ready) {
    const session = await new Session(ready.url).open('t');
    const applied = await follow(session, ready.room_id, 6);
    await session.send(ready.report_room_id, 'report', `applied:${applied.join(',')}`);
    return session;
  },
  async 'duplicate-event'(ready) {
    const session = await new Session(ready.url).open('t');
    const applied = await follow(session, ready.room_id, 4);
    await session.send(ready.report_room_id, 'report', `applied:${applied.join(',')}`);
    return session;
  },
  async 'token-expiring'(ready) {
    const session = await new Session(ready.url).open('t');
    while (!first(await session.nextEvent(), 14));
    await session.call(REQ.refresh, encode([[1, 'a-new-token']]));
    return session;
  },
  async 'server-draining'(ready) {
    const session = await new Session(ready.url).open('t');
    const applied = await session.subscribe(ready.room_id, 0);
    let disconnect;
    while (!(disconnect = first(await session.nextEvent(), 12)));
    const delay = num(decode(disconnect), 4);
    // Not before reconnect_delay_ms, plus jitter.
    await sleep(delay + jitter(200));
    const again = await new Session(ready.url).open('t');
    await again.subscribe(ready.room_id, applied[applied.length - 1] || 0);
    return again;
  },
  async 'slow-reads'(ready) {
    const session = await new Session(ready.url).open('t');
    // At most max_in_flight_requests unanswered.
    let free = session.maxInFlight;
    const queue = [];
    const acquire = () => (free > 0 ? (free--, Promise.resolve()) : new Promise((r) => queue.push(r)));
    const release = () => (queue.length ? queue.shift()() : free++);
    await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(async (n) => {
      await acquire();
      try {
        await session.send(ready.room_id, `m${n}-${process.pid}`, `m${n}`);
      } finally {
        release();
      }
    }));
    return session;
  },
};

// ---- driving the harness --------------------------------------------------------------------

function runScenario(harness, scenario) {
  return new Promise((resolve) => {
    const child = spawn(harness, ['client-harness', '--scenario', scenario, '--timeout', '30'],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: child.stdout });
    let session;
    let output = '';
    lines.once('line', (line) => {
      const ready = JSON.parse(line);
      behaviours[scenario](ready).then((s) => { session = s; },
        (err) => { output += `client: ${err.message}\n`; });
      lines.on('line', (more) => { output += `${more}\n`; });
    });
    child.on('exit', (code) => {
      if (session && !session.closed) session.close();
      resolve({ scenario, code, output });
    });
  });
}

async function main() {
  const args = process.argv.slice(2);
  const flag = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const harness = flag('--harness', 'target/debug/chatwire-conformance');
  const which = flag('--scenario', 'all');
  const scenarios = which === 'all' ? SCENARIOS : [which];
  let failed = 0;
  for (const scenario of scenarios) {
    const result = await runScenario(harness, scenario);
    process.stdout.write(result.output);
    if (result.code !== 0) failed++;
  }
  console.log(`reference client: ${scenarios.length - failed} of ${scenarios.length} scenarios passed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});

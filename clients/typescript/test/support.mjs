// Test support: a real `chatwire serve` on 127.0.0.1:0 over a temporary data folder (the
// embedded default), tokens from `chatwire token`, and condition waits with deadlines.
import { spawn, execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { ChatwireClient } from "../dist/index.js";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target");
export const chatwireBin = process.env.CHATWIRE_BIN ?? join(targetDir, "debug", "chatwire");

/** Generous deadline for anything a test waits on. */
export const DEADLINE_MS = 60_000;

const serverEnv = {
  CHATWIRE_QUIC__ENABLED: "false",
  CHATWIRE_LIMITS__RATE_SENDS__RATE_PER_MINUTE: "1000000",
  CHATWIRE_LIMITS__RATE_SENDS__BURST: "100000",
  CHATWIRE_LIMITS__RATE_ROOM_SENDS__RATE_PER_MINUTE: "1000000",
  CHATWIRE_LIMITS__RATE_ROOM_SENDS__BURST: "100000",
  CHATWIRE_LIMITS__RATE_REQUESTS__RATE_PER_MINUTE: "1000000",
  CHATWIRE_LIMITS__RATE_REQUESTS__BURST: "100000",
  CHATWIRE_LIMITS__RATE_TYPING__RATE_PER_MINUTE: "1000000",
  CHATWIRE_LIMITS__RATE_TYPING__BURST: "100000",
  CHATWIRE_LIMITS__RATE_CONNECTS_PER_IP__RATE_PER_MINUTE: "1000000",
  CHATWIRE_LIMITS__RATE_CONNECTS_PER_IP__BURST: "100000",
  CHATWIRE_LIMITS__RATE_SEARCH__RATE_PER_MINUTE: "1000000",
  CHATWIRE_LIMITS__RATE_SEARCH__BURST: "100000",
  RUST_LOG: "warn",
};

/** A running server process. */
export class TestServer {
  static async start({ dataDir, listen = "127.0.0.1:0", env = {} } = {}) {
    const server = new TestServer();
    server.env = { ...process.env, ...serverEnv, ...env };
    server.ownDir = !dataDir;
    server.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), "chatwire-ts-"));
    await server.spawn(listen);
    return server;
  }

  async spawn(listen) {
    this.proc = spawn(chatwireBin, ["serve", "--listen", listen, "--data-dir", this.dataDir], {
      env: this.env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.addr = await new Promise((resolve, reject) => {
      let seen = "";
      const timer = setTimeout(() => reject(new Error(`server did not start: ${seen}`)), DEADLINE_MS);
      this.proc.stderr.on("data", (chunk) => {
        seen += chunk;
        const m = /serving on http:\/\/(\S+)/.exec(seen);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      this.proc.once("exit", (code) => reject(new Error(`server exited (${code}): ${seen}`)));
    });
  }

  get url() {
    return `ws://${this.addr}/v1/ws`;
  }

  get httpUrl() {
    return `http://${this.addr}`;
  }

  token(user, ttl = "1h") {
    return execFileSync(chatwireBin, ["token", "--user", user, "--ttl", ttl, "--data-dir", this.dataDir], { env: this.env })
      .toString()
      .trim();
  }

  /** GET on the admin API with the data folder's admin key: the parsed JSON body. */
  async admin(path) {
    const key = readFileSync(join(this.dataDir, "admin-key"), "utf8").trim();
    const response = await fetch(this.httpUrl + path, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(response.status, 200, `GET ${path}`);
    return response.json();
  }

  /** A connected SDK client for `user`. */
  async client(user, options = {}) {
    const token = this.token(user);
    return ChatwireClient.connect({ url: this.url, token, WebSocket, backoff: { baseMs: 50, maxMs: 500 }, ...options });
  }

  /** SIGKILL: no drain, no goodbye. */
  async kill() {
    this.proc.kill("SIGKILL");
    await this.exited;
  }

  /** SIGTERM: the server drains (Disconnect SERVER_DRAINING, reconnect true) and exits. */
  async terminate() {
    this.proc.kill("SIGTERM");
    await this.exited;
  }

  /** Starts again on the same address and data folder. */
  async restart() {
    await this.spawn(this.addr);
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGTERM");
      await this.exited;
    }
    if (this.ownDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * `count` nodes of one cluster (distributed mode) on the shared services of the test command
 * (`scripts/services`: CHATWIRE_TEST_REDIS_URL, CHATWIRE_TEST_AMQP_URL, CHATWIRE_TEST_CQL_NODES;
 * a missing one fails the test), in a keyspace, queue prefix and key prefix of their own. The
 * nodes share the first node's development secrets, so a token of one is a token of all.
 * `stopCluster` stops them and drops the keyspace.
 */
export async function startCluster(count) {
  const need = (name) => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set: run the tests through scripts/test, or load .services/env`);
    return value;
  };
  const name = randomBytes(5).toString("hex");
  const env = {
    CHATWIRE_STORAGE__BACKEND: "scylla",
    CHATWIRE_STORAGE__CQL__NODES: need("CHATWIRE_TEST_CQL_NODES"),
    CHATWIRE_STORAGE__CQL__KEYSPACE: `webchat_${name}`,
    CHATWIRE_CLUSTER__AMQP_URL: need("CHATWIRE_TEST_AMQP_URL"),
    CHATWIRE_CLUSTER__QUEUE_PREFIX: `w${name}.`,
    CHATWIRE_CLUSTER__HEARTBEAT_INTERVAL_MS: "250",
    CHATWIRE_CLUSTER__NODE_TTL_MS: "1500",
    CHATWIRE_REDIS__URL: need("CHATWIRE_TEST_REDIS_URL"),
    CHATWIRE_REDIS__KEY_PREFIX: `w${name}:`,
    CHATWIRE_SEARCH__ENABLED: "false",
  };
  const dirs = Array.from({ length: count }, () => mkdtempSync(join(tmpdir(), "chatwire-ts-node-")));
  execFileSync(chatwireBin, ["--data-dir", dirs[0], "migrate"], { env: { ...process.env, ...serverEnv, ...env } });
  const nodes = [await TestServer.start({ dataDir: dirs[0], env })];
  for (const dir of dirs.slice(1)) {
    for (const file of ["jwt-secret", "admin-key", "tls-cert.der", "tls-key.der"]) {
      copyFileSync(join(dirs[0], file), join(dir, file));
    }
    nodes.push(await TestServer.start({ dataDir: dir, env }));
  }
  for (const node of nodes) node.ownDir = true;
  nodes.keyspace = env.CHATWIRE_STORAGE__CQL__KEYSPACE;
  nodes.cqlNode = env.CHATWIRE_STORAGE__CQL__NODES.split(",")[0];
  return nodes;
}

/** Stops the nodes of `startCluster` and drops their keyspace. */
export async function stopCluster(nodes) {
  await Promise.all(nodes.map((node) => node.stop()));
  await cqlQuery(nodes.cqlNode, `DROP KEYSPACE IF EXISTS ${nodes.keyspace}`);
}

/**
 * Runs one CQL statement on `hostPort` over the native protocol (v4, no authentication, as the
 * test services run): STARTUP, then QUERY; rejects on an ERROR frame or after the deadline.
 */
function cqlQuery(hostPort, cql) {
  const [host, port] = hostPort.split(":");
  const frame = (stream, opcode, body) => {
    const header = Buffer.alloc(9);
    header.writeUInt8(0x04, 0);
    header.writeUInt8(0, 1);
    header.writeInt16BE(stream, 2);
    header.writeUInt8(opcode, 4);
    header.writeInt32BE(body.length, 5);
    return Buffer.concat([header, body]);
  };
  const string = (text) => {
    const bytes = Buffer.from(text, "utf8");
    const len = Buffer.alloc(2);
    len.writeUInt16BE(bytes.length);
    return Buffer.concat([len, bytes]);
  };
  const startup = Buffer.concat([Buffer.from([0, 1]), string("CQL_VERSION"), string("3.0.0")]);
  const query = Buffer.from(cql, "utf8");
  const queryLen = Buffer.alloc(4);
  queryLen.writeInt32BE(query.length);
  // Consistency ONE (0x0001), no flags.
  const queryBody = Buffer.concat([queryLen, query, Buffer.from([0x00, 0x01, 0x00])]);
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(Number(port), host);
    const timer = setTimeout(() => done(new Error(`CQL ${cql}: timed out`)), DEADLINE_MS);
    let buffered = Buffer.alloc(0);
    const done = (err) => {
      clearTimeout(timer);
      socket.destroy();
      err ? reject(err) : resolve();
    };
    socket.on("error", done);
    socket.on("connect", () => socket.write(frame(0, 0x01, startup)));
    socket.on("data", (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 9) {
        const length = buffered.readInt32BE(5);
        if (buffered.length < 9 + length) return;
        const opcode = buffered.readUInt8(4);
        const body = buffered.subarray(9, 9 + length);
        buffered = buffered.subarray(9 + length);
        if (opcode === 0x00) return done(new Error(`CQL ${cql}: ${body.subarray(6).toString("utf8")}`));
        if (opcode === 0x02) socket.write(frame(1, 0x07, queryBody)); // READY: send the query
        else if (opcode === 0x08) return done(); // RESULT
      }
    });
  });
}

/** Resolves once `condition()` is true; checks again on every event the emitter reports, and fails after the deadline. */
export function waitUntil(client, condition, what, kinds = ["event", "status", "state", "session"]) {
  return new Promise((resolve, reject) => {
    if (condition()) return resolve();
    const offs = [];
    const done = (err) => {
      clearTimeout(timer);
      offs.forEach((off) => off());
      err ? reject(err) : resolve();
    };
    const timer = setTimeout(() => done(new Error(`timed out waiting for ${what}`)), DEADLINE_MS);
    for (const kind of kinds) {
      offs.push(
        client.on(kind, () => {
          if (condition()) done();
        }),
      );
    }
  });
}

/** The next `kind` event of `client` that satisfies `match`. */
export function nextEvent(client, kind, match = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${kind}`));
    }, DEADLINE_MS);
    const off = client.on(kind, (value) => {
      if (!match(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

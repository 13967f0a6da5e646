// The SDK against `chatwire-conformance client-harness` (docs/conformance.md, "Checking a
// client"): for each scenario the test starts the harness, reads its one-line JSON "ready"
// message, drives the real SDK through its public API (a token function, subscribeRoom, the
// outbox, refresh, reconnect) as the scenario's client script asks, waits for the harness to exit
// and asserts its verdict: exit status 0, `passed`, and every check passed (SHOULDs included).
// conformance/harness-drivers/reference-client.cjs does the same with `ws` only.
//
// The harness binary is built with `cargo build -p chatwire-conformance`; when it is missing the
// tests fail (they do not skip). CHATWIRE_CONFORMANCE_BIN overrides its path.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { ChatwireClient } from "../dist/index.js";
import { repoRoot, waitUntil, nextEvent } from "./support.mjs";

const targetDir = process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target");
const harnessBin = process.env.CHATWIRE_CONFORMANCE_BIN ?? join(targetDir, "debug", "chatwire-conformance");

/** How long the harness waits for the client (its `--timeout`, seconds). */
const HARNESS_TIMEOUT_S = 30;

/** A client of the harness: any token works; a function, so every connection asks for one. */
function connect(ready, options = {}) {
  let tokens = 0;
  const client = new ChatwireClient({
    url: ready.url,
    token: () => `harness-token-${++tokens}`,
    WebSocket,
    backoff: { baseMs: 100, maxMs: 1000 },
    ...options,
  });
  client.tokensIssued = () => tokens;
  // Background failures (a resume, a refresh): shown when a scenario fails.
  client.backgroundErrors = [];
  client.on("error", (err) => client.backgroundErrors.push(err));
  return client;
}

/**
 * Follows `room` from seq 0 and resolves with the seqs the SDK surfaced as `room` events, once
 * `last` is among them.
 */
async function follow(client, room, last) {
  const applied = [];
  client.on("room", (event) => {
    if (event.roomId === room) applied.push(Number(event.seq));
  });
  await client.subscribeRoom(room, { afterSeq: 0n });
  await waitUntil(client, () => applied.includes(last), `seq ${last} of ${room}`, ["event"]);
  return applied;
}

/** What each scenario's client script asks (docs/conformance.md); each returns its client. */
const behaviours = {
  async "drop-mid-request"(ready, clients) {
    const client = connect(ready);
    clients.push(client);
    await client.open();
    // The connection drops with the Send in flight; the outbox resends it, unchanged, after the reconnect.
    const message = client.sendMessage(ready.room_id, "hello");
    await message.sent;
    assert.equal(message.status, "sent");
  },

  async "ack-duplicated"(ready, clients) {
    const client = connect(ready);
    clients.push(client);
    await client.open();
    const one = client.sendMessage(ready.room_id, "one");
    await one.sent;
    const two = client.sendMessage(ready.room_id, "two");
    await two.sent;
    assert.notEqual(one.clientMsgId, two.clientMsgId);
  },

  async "seq-gap"(ready, clients) {
    const client = connect(ready);
    clients.push(client);
    await client.open();
    const applied = await follow(client, ready.room_id, 6);
    await client.sendMessage(ready.report_room_id, `applied:${applied.join(",")}`).sent;
  },

  async "duplicate-event"(ready, clients) {
    const client = connect(ready);
    clients.push(client);
    await client.open();
    const applied = await follow(client, ready.room_id, 4);
    await client.sendMessage(ready.report_room_id, `applied:${applied.join(",")}`).sent;
  },

  async "token-expiring"(ready, clients) {
    const client = connect(ready);
    clients.push(client);
    const refreshed = nextEvent(client, "tokenRefreshed");
    await client.open();
    await refreshed;
    // Connect's token, then the refreshed one from the same function.
    assert.equal(client.tokensIssued(), 2);
  },

  async "server-draining"(ready, clients) {
    const client = connect(ready);
    clients.push(client);
    await client.open();
    const sessions = [];
    client.on("session", (s) => sessions.push(s));
    // The Disconnect follows the Subscribe reply at once, so subscribeRoom (which then loads
    // members and receipts) resolves only in a later session: wait for seq 3 instead.
    const subscribed = client.subscribeRoom(ready.room_id, { afterSeq: 0n });
    subscribed.catch(() => {});
    await waitUntil(client, () => client.room(ready.room_id)?.lastSeq === 3n, "seq 3 applied", ["event"]);
    // The SDK reconnects on its own after the Disconnect (and resumes the room from seq 3, which
    // the harness judges, then exits).
    await waitUntil(client, () => sessions.length >= 1, "the next session", ["session"]);
    assert.equal(client.room(ready.room_id).lastSeq, 3n);
  },

  async "slow-reads"(ready, clients) {
    const client = connect(ready);
    clients.push(client);
    await client.open();
    const messages = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => client.sendMessage(ready.room_id, `m${n}`));
    await Promise.all(messages.map((m) => m.sent));
    assert.equal(new Set(messages.map((m) => m.clientMsgId)).size, 8);
  },
};

/**
 * Runs one scenario: spawns the harness, runs the behaviour against its URL, waits for its exit.
 * Resolves with the exit code, the JSON verdict, the harness's output and the client's error.
 */
function runScenario(scenario) {
  const dir = mkdtempSync(join(tmpdir(), "chatwire-harness-"));
  const verdictPath = join(dir, "verdict.json");
  const clients = [];
  return new Promise((resolve, reject) => {
    if (!existsSync(harnessBin)) {
      reject(new Error(`${harnessBin} is missing: build it with \`cargo build -p chatwire-conformance\``));
      return;
    }
    const child = spawn(harnessBin, ["client-harness", "--scenario", scenario, "--json", verdictPath, "--timeout", String(HARNESS_TIMEOUT_S)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let ready;
    let behaviour = Promise.resolve();
    let clientError;
    child.stderr.on("data", (chunk) => (output += chunk));
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      if (ready !== undefined) {
        output += `${line}\n`;
        return;
      }
      try {
        ready = JSON.parse(line);
        assert.equal(ready.ready, true);
        assert.equal(ready.scenario, scenario);
      } catch (err) {
        ready = null;
        clientError = new Error(`the harness's first line is not its ready message: ${line} (${err.message})`);
        child.kill();
        return;
      }
      behaviour = behaviours[scenario](ready, clients).catch((err) => {
        clientError = err;
      });
    });
    child.once("error", (err) => reject(new Error(`could not start ${harnessBin}: ${err.message}`)));
    child.once("close", async (code, signal) => {
      for (const client of clients) client.close();
      // Anything still awaited ends with the client's close (NoReplyError / SessionClosedError).
      const unfinished = Symbol("unfinished");
      const settled = await Promise.race([behaviour, new Promise((r) => setTimeout(() => r(unfinished), 5000))]);
      if (settled === unfinished && clientError === undefined) clientError = new Error("the client script had not finished 5 s after the harness exited");
      let verdict;
      try {
        verdict = JSON.parse(readFileSync(verdictPath, "utf8"));
      } catch {
        verdict = undefined;
      }
      rmSync(dir, { recursive: true, force: true });
      const backgroundErrors = clients.flatMap((c) => c.backgroundErrors);
      resolve({ code, signal, verdict, output, clientError, backgroundErrors });
    });
  });
}

function describe(result) {
  const checks = (result.verdict?.checks ?? [])
    .map((c) => `  ${c.passed ? "ok  " : "FAIL"} ${c.requirement} ${c.level}: ${c.what} (${c.actual})`)
    .join("\n");
  return [
    `exit ${result.code ?? result.signal}`,
    result.verdict?.error ? `error: ${result.verdict.error}` : "",
    checks,
    result.clientError ? `client: ${result.clientError.stack ?? result.clientError}` : "",
    ...result.backgroundErrors.map((err) => `client error event: ${err.message}`),
    result.output.trim(),
  ]
    .filter(Boolean)
    .join("\n");
}

test("the client-harness binary is built", () => {
  assert.ok(existsSync(harnessBin), `${harnessBin} is missing: build it with \`cargo build -p chatwire-conformance\``);
});

for (const scenario of Object.keys(behaviours)) {
  test(`client-harness ${scenario}: the SDK passes`, { timeout: (HARNESS_TIMEOUT_S + 30) * 1000 }, async () => {
    const result = await runScenario(scenario);
    const why = describe(result);
    assert.equal(result.code, 0, why);
    assert.ok(result.verdict, `no JSON verdict\n${why}`);
    assert.equal(result.verdict.scenario, scenario, why);
    assert.equal(result.verdict.passed, true, why);
    assert.equal(result.verdict.error ?? null, null, why);
    assert.ok(result.verdict.checks.length > 0, `no checks\n${why}`);
    for (const check of result.verdict.checks) assert.ok(check.passed, `${check.requirement} (${check.level}) failed: ${check.what}\n${why}`);
    assert.equal(result.clientError, undefined, why);
  });
}

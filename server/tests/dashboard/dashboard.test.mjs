// The dashboard served by `chatwire serve` at /dashboard, in headless Chromium (playwright-core,
// /usr/bin/chromium), asserted by what is on screen: the key form, numbers that move after
// traffic (SDK clients in Node), the key kept across a reload (sessionStorage, never in the
// URL), and, with a private Redis (scripts/services in a temporary folder) that the test stops,
// a health score that drops with the Redis reason on screen.
//
//   node --test server/tests/dashboard/     (after a debug build of chatwire and the SDK)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { TestServer, repoRoot, DEADLINE_MS } from "../../../clients/typescript/test/support.mjs";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.CHATWIRE_ARTIFACTS ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target"), "test-artifacts");
const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let browser;
before(async () => {
  mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({ executablePath, args: flags, headless: true });
});
after(async () => {
  await browser?.close();
});

function adminKey(server) {
  return readFileSync(join(server.dataDir, "admin-key"), "utf8").trim();
}

/** A page on the dashboard, signed in with the admin key through the form. */
async function open(server) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  const urls = [];
  page.on("request", (request) => urls.push(request.url()));
  await page.goto(server.httpUrl + "/dashboard");
  await page.waitForSelector("#login:not([hidden])");
  await page.fill("#key", adminKey(server));
  await page.click("#sign-in");
  await page.waitForSelector("#app:not([hidden])");
  return { context, page, errors, urls };
}

/** The number shown in `#id`. */
async function shown(page, id) {
  return Number(await page.textContent(`#${id}`));
}

/** Waits until `#id` shows a number that satisfies `ok`. */
function waitForNumber(page, id, ok) {
  return page.waitForFunction(
    ([id, ok]) => {
      const v = Number(document.getElementById(id).textContent);
      return !Number.isNaN(v) && new Function("v", `return ${ok}`)(v);
    },
    [id, ok],
  );
}

test("the dashboard asks for the key, keeps it for the tab, and its numbers move after traffic", async () => {
  const server = await TestServer.start();
  try {
    const { context, page, errors, urls } = await open(server);
    await waitForNumber(page, "score", "v >= 0");
    assert.equal(await shown(page, "score"), 100, "a quiet embedded node is healthy");
    assert.equal(await page.textContent("#status"), "healthy");
    assert.equal(await shown(page, "connections"), 0);
    assert.equal(await shown(page, "sends-total"), 0);
    assert.match(await page.textContent("#backends"), /store/);
    assert.match(await page.textContent("#nodes"), /this node/);

    // Traffic: two users, a group, ten messages.
    const alice = await server.client("alice");
    const bob = await server.client("bob");
    const { room } = await alice.createGroup({ name: "team", memberIds: ["bob"], clientRequestId: "team-1" });
    await bob.subscribe({ roomId: room.id, afterSeq: 0n });
    for (let i = 0; i < 10; i++) {
      await alice.send({ roomId: room.id, clientMsgId: `m-${i}`, content: { text: `hello ${i}` } });
    }
    await waitForNumber(page, "connections", "v === 2");
    await waitForNumber(page, "sends-total", "v >= 10");
    await waitForNumber(page, "deliveries-total", "v >= 10");
    await waitForNumber(page, "rooms", "v >= 1");
    await page.waitForFunction(() => /ms$/.test(document.getElementById("ack-p99").textContent));
    await page.waitForFunction(() => /ms$/.test(document.getElementById("ack-p50").textContent));
    await page.screenshot({ path: join(artifacts, "dashboard-traffic.png") });

    // A reload keeps the key (sessionStorage), which never appears in a URL.
    await page.reload();
    await page.waitForSelector("#app:not([hidden])");
    await waitForNumber(page, "sends-total", "v >= 10");
    const key = adminKey(server);
    assert.ok(urls.length > 0);
    assert.ok(urls.every((url) => !url.includes(key)), "the key is never in a URL");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("chatwire.adminKey")), key);

    // A new tab (context) starts at the form; a wrong key is refused there.
    const other = await browser.newContext();
    const second = await other.newPage();
    await second.goto(server.httpUrl + "/dashboard");
    await second.waitForSelector("#login:not([hidden])");
    await second.fill("#key", "not-the-key");
    await second.click("#sign-in");
    await second.waitForSelector("#login-error:has-text('refused')");
    await other.close();

    alice.close();
    bob.close();
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});

/** scripts/services for a private Redis in a temporary folder. */
function services(command, dir) {
  return execFileSync(join(repoRoot, "scripts/services"), [command], {
    env: { ...process.env, CHATWIRE_SERVICES_DIR: dir, CHATWIRE_SERVICES: "redis" },
    stdio: ["ignore", "pipe", "pipe"],
  }).toString();
}

test("a stopped Redis lowers the health score with its reason on screen", async () => {
  const dir = mkdtempSync(join(tmpdir(), "chatwire-svc-dash-"));
  let server;
  try {
    services("start", dir);
    const env = readFileSync(join(dir, "env"), "utf8");
    const url = /CHATWIRE_TEST_REDIS_URL=(\S+)/.exec(env)?.[1];
    assert.ok(url, `a Redis URL in ${readdirSync(dir)}`);
    process.env.CHATWIRE_REDIS__URL = url;
    try {
      server = await TestServer.start();
    } finally {
      delete process.env.CHATWIRE_REDIS__URL;
    }
    const { context, page, errors } = await open(server);
    await waitForNumber(page, "score", "v === 100");
    await page.waitForSelector('#backends tr[data-backend="redis"] td.up');

    services("stop", dir);
    await waitForNumber(page, "score", "v < 100");
    await page.waitForSelector('#findings li[data-rule="backend_down"]:has-text("redis")');
    await page.waitForSelector('#backends tr[data-backend="redis"] td.down');
    assert.match(await page.textContent("#status"), /degraded|critical/);
    assert.match(await page.textContent("#findings"), /Check Redis/);
    await page.screenshot({ path: join(artifacts, "dashboard-redis-down.png") });
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server?.stop();
    try {
      services("stop", dir);
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

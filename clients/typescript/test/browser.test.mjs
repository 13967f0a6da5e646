// The web-chat example in headless Chromium: two pages as two users, against `chatwire serve`,
// which serves the bundled page at `/`. Each page must show the other's message, typing
// indicator and read receipt; screenshots go to CHATWIRE_ARTIFACTS (default
// target/test-artifacts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { TestServer, repoRoot, DEADLINE_MS } from "./support.mjs";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.CHATWIRE_ARTIFACTS ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target"), "test-artifacts");
const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

async function login(browser, server, user) {
  const page = await browser.newPage({ viewport: { width: 900, height: 560 } });
  page.setDefaultTimeout(DEADLINE_MS);
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  await page.goto(server.httpUrl + "/");
  await page.fill("#token", server.token(user));
  await page.click("#connect");
  await page.waitForSelector(`#me:has-text("connected as ${user}")`);
  return { page, errors };
}

async function openChat(page, peer) {
  await page.fill("#peer", peer);
  await page.click("#open-direct");
  await page.waitForSelector(`#room-title:has-text("${peer}")`);
}

test("two users chat in the web-chat page: message, typing indicator and read receipt on each side", async () => {
  const server = await TestServer.start();
  const browser = await chromium.launch({ executablePath, args: flags, headless: true });
  try {
    const alice = await login(browser, server, "alice");
    const bob = await login(browser, server, "bob");
    await openChat(alice.page, "bob");
    await openChat(bob.page, "alice");

    for (const [from, to, fromName, toName, text] of [
      [alice.page, bob.page, "alice", "bob", "hello bob"],
      [bob.page, alice.page, "bob", "alice", "hi alice"],
    ]) {
      await from.type("#text", text.slice(0, 3));
      await to.waitForSelector(`#typing:has-text("${fromName} is typing")`);
      await from.type("#text", text.slice(3));
      await from.press("#text", "Enter");
      await to.waitForSelector(`#messages li.theirs:has-text("${text}")`);
      // The receiver's page has the room open, so it marks the message read.
      await from.waitForSelector(`#messages li.mine:has-text("${text}") .status[data-status="read"]`);
      await from.waitForSelector(`#receipt:has-text("Read by ${toName}")`);
    }
    // Typing ends when the message arrives.
    assert.equal(await alice.page.textContent("#typing"), "");
    // Presence: each sees the other online.
    await alice.page.waitForSelector('#presence:has-text("bob online")');
    await bob.page.waitForSelector('#presence:has-text("alice online")');

    mkdirSync(artifacts, { recursive: true });
    await alice.page.screenshot({ path: join(artifacts, "web-chat-alice.png") });
    await bob.page.screenshot({ path: join(artifacts, "web-chat-bob.png") });
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  } finally {
    await browser.close();
    await server.stop();
  }
});

// The SDK as a user gets it: `npm pack`, installed into an empty project with `ws` and its
// types; the README's quick start (examples/quickstart/quickstart.ts, the same text) compiled
// with strict tsc and run against a real server from `import`, a CommonJS program compiled
// from a .cts file run from `require`, a DOM-typed use of the WebSocket option type-checked,
// and every source map of the package resolved to a shipped file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, copyFileSync, readdirSync, existsSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TestServer, repoRoot } from "./support.mjs";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

function run(cmd, args, options = {}) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: "pipe", ...options });
  } catch (err) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  }
}

const cjsProgram = `// Compiled to CommonJS: every import below becomes require().
import { ChatwireClient, ConnectionError } from "@chatwire/client";
import { FileOutboxStore } from "@chatwire/client/node";
import WebSocket = require("ws");

async function main(): Promise<void> {
  const url = process.env.CHATWIRE_URL ?? "";
  const token = process.env.CHATWIRE_TOKEN ?? "";
  const outboxStore = new FileOutboxStore(process.env.OUTBOX_FILE ?? "outbox.json");
  const client = await ChatwireClient.connect({ url, token, WebSocket, outboxStore });
  const { room } = await client.createGroup({ name: "from require" });
  const seq = await client.sendMessage(room!.id, "hello from require").sent;
  await client.flushOutbox();
  console.log(\`cjs stored at seq \${seq}, outbox left \${(await outboxStore.load()).length}\`);
  client.close();
  const refused = await ChatwireClient.connect({ url: url.replace("/v1/ws", "/nowhere"), token, WebSocket }).catch((e: unknown) => e);
  console.log(\`wrong path: \${refused instanceof ConnectionError ? refused.httpStatus : String(refused)}\`);
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
`;

const browserProgram = `// Type-checked only: the DOM's WebSocket constructor fits the same option as ws's.
import { ChatwireClient, IndexedDbOutboxStore } from "@chatwire/client";
export async function inBrowser(token: string): Promise<ChatwireClient> {
  return ChatwireClient.connect({ url: "wss://chat.example/v1/ws", token, WebSocket: globalThis.WebSocket, outboxStore: new IndexedDbOutboxStore("outbox") });
}
`;

/** Every file under `dir`. */
function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

test("the README quick start is examples/quickstart/quickstart.ts", () => {
  const readme = readFileSync(join(pkg, "README.md"), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.equal(block, readFileSync(join(pkg, "examples/quickstart/quickstart.ts"), "utf8"));
});

test("the packed SDK installs into an empty project; the quick start compiles under strict tsc and runs from import and require", async () => {
  const work = mkdtempSync(join(tmpdir(), "chatwire-pack-"));
  const server = await TestServer.start();
  try {
    const packed = run(npm, ["pack", "--silent", "--pack-destination", work], { cwd: pkg }).trim().split("\n").at(-1);
    const tarball = join(work, packed);
    assert.ok(existsSync(tarball), `npm pack wrote ${packed}`);
    const app = join(work, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "quickstart-check", private: true, type: "module" }));
    run(npm, ["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline", tarball, "ws@^8.18.0", "@types/ws@^8.18.0", "@types/node@^20.19.0"], { cwd: app });

    copyFileSync(join(pkg, "examples/quickstart/quickstart.ts"), join(app, "quickstart.ts"));
    writeFileSync(join(app, "require-check.cts"), cjsProgram);
    writeFileSync(join(app, "browser.ts"), browserProgram);
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2022", "DOM"], types: ["node"], strict: true, skipLibCheck: false, outDir: "out" },
        files: ["quickstart.ts", "require-check.cts", "browser.ts"],
      }),
    );
    run(process.execPath, [tsc, "-p", app]);

    const env = { ...process.env, CHATWIRE_URL: server.url, CHATWIRE_TOKEN: server.token("alice"), OUTBOX_FILE: join(work, "outbox.json") };
    const esm = run(process.execPath, ["out/quickstart.js"], { cwd: app, env });
    assert.match(esm, /^alice: hello$/m);
    assert.match(esm, /^stored at seq \d+ in room \S+$/m);
    const cjs = run(process.execPath, ["out/require-check.cjs"], { cwd: app, env });
    assert.match(cjs, /^cjs stored at seq \d+, outbox left 0$/m);
    assert.match(cjs, /^wrong path: 404$/m, "connect() rejects at once on an HTTP 404 to the upgrade");

    // Source maps: every .js and .d.ts names a shipped map, and every map's sources are shipped.
    const installed = join(app, "node_modules", "@chatwire", "client");
    let maps = 0;
    for (const file of walk(join(installed, "dist")).filter((f) => /\.(js|d\.ts)$/.test(f))) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(file, "utf8"))?.[1];
      assert.ok(url, `${file} names its source map`);
      const mapFile = join(dirname(file), url);
      assert.ok(existsSync(mapFile), `${mapFile} is shipped`);
      const map = JSON.parse(readFileSync(mapFile, "utf8"));
      for (const source of map.sources) {
        const path = resolve(dirname(mapFile), map.sourceRoot ?? "", source);
        assert.ok(existsSync(path), `${source} of ${mapFile} is shipped`);
      }
      maps++;
    }
    assert.ok(maps > 40, `${maps} source maps checked`);
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
});

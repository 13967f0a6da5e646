// Checked-in generated code equals a fresh regeneration: the protobuf-es messages (src/gen,
// from buf generate) and the web-chat bundle. (src/generated is checked by
// `cargo test -p chatwire-codegen`.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { repoRoot } from "./support.mjs";

const pkg = join(repoRoot, "clients/typescript");
const buf = join(repoRoot, "node_modules/.bin/buf");

function files(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)))
    .sort();
}

test("src/gen is what buf generate writes", () => {
  const out = mkdtempSync(join(tmpdir(), "chatwire-gen-"));
  try {
    execFileSync(buf, ["generate", "../../protocol", "--template", "buf.gen.yaml", "--output", out], {
      cwd: pkg,
      env: { ...process.env, PATH: `${join(repoRoot, "node_modules/.bin")}:${process.env.PATH}` },
    });
    const fresh = join(out, "src/gen");
    const checkedIn = join(pkg, "src/gen");
    assert.deepEqual(files(checkedIn), files(fresh), "same files (run scripts/regen)");
    for (const f of files(fresh)) {
      assert.equal(readFileSync(join(checkedIn, f), "utf8"), readFileSync(join(fresh, f), "utf8"), `${f} is stale: run scripts/regen`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("the web-chat bundle and its icon are what build.mjs writes from the sources", () => {
  execFileSync(process.execPath, ["examples/web-chat/build.mjs", "--check"], { cwd: pkg, stdio: "pipe" });
});

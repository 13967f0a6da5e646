// Bundles the web chat into one self-contained page, dist/index.html (checked in; the server
// serves it at `/`). Run from clients/typescript: `npm run build:example`; `--check` fails when
// the checked-in page differs from a fresh bundle.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const result = await build({
  entryPoints: [join(here, "app.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  write: false,
});
const js = result.outputFiles[0].text.replace(/<\/script/gi, "<\\/script");
const html = readFileSync(join(here, "index.html"), "utf8").replace("/*APP*/", () => js.trimEnd());
const out = join(here, "dist", "index.html");
if (process.argv.includes("--check")) {
  let old = "";
  try {
    old = readFileSync(out, "utf8");
  } catch {}
  if (old !== html) {
    console.error("examples/web-chat/dist/index.html is stale: run scripts/regen");
    process.exit(1);
  }
} else {
  mkdirSync(join(here, "dist"), { recursive: true });
  writeFileSync(out, html);
  console.log(`wrote examples/web-chat/dist/index.html (${html.length} bytes)`);
}

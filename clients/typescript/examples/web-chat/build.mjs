// Bundles the web chat into one self-contained page, dist/index.html, and draws its icon,
// dist/favicon.ico (both checked in; the server serves them at `/` and `/favicon.ico`). Run
// from clients/typescript: `npm run build:example`; `--check` fails when a checked-in file
// differs from a fresh build.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { deflateSync } from "node:zlib";
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
const outputs = [
  ["index.html", Buffer.from(html)],
  ["favicon.ico", favicon()],
];
for (const [name, bytes] of outputs) {
  const out = join(here, "dist", name);
  if (process.argv.includes("--check")) {
    let old = Buffer.alloc(0);
    try {
      old = readFileSync(out);
    } catch {}
    if (!old.equals(bytes)) {
      console.error(`examples/web-chat/dist/${name} is stale: run scripts/regen`);
      process.exit(1);
    }
  } else {
    mkdirSync(join(here, "dist"), { recursive: true });
    writeFileSync(out, bytes);
    console.log(`wrote examples/web-chat/dist/${name} (${bytes.length} bytes)`);
  }
}

/** A 32x32 icon (a white speech bubble on a blue disc): one PNG inside an ICO container. */
function favicon() {
  const size = 32;
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = [0]; // PNG filter: none
    for (let x = 0; x < size; x++) {
      const cx = x + 0.5 - 16;
      const cy = y + 0.5 - 16;
      const disc = cx * cx + cy * cy <= 15.5 * 15.5;
      const bubble = (x >= 8 && x <= 23 && y >= 9 && y <= 19) || (x >= 10 && x <= 13 && y >= 20 && y <= 23 - (x - 10));
      if (!disc) row.push(0, 0, 0, 0);
      else if (bubble) row.push(255, 255, 255, 255);
      else row.push(0x1a, 0x73, 0xe8, 255);
    }
    rows.push(...row);
  }
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA, no interlace
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    // Level 0 (stored blocks): the same bytes from every zlib version.
    chunk("IDAT", deflateSync(Buffer.from(rows), { level: 0 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
  const header = Buffer.alloc(22);
  header.writeUInt16LE(0, 0);
  header.writeUInt16LE(1, 2); // icon
  header.writeUInt16LE(1, 4); // one image
  header.set([size, size, 0, 0], 6);
  header.writeUInt16LE(1, 10); // planes
  header.writeUInt16LE(32, 12); // bits per pixel
  header.writeUInt32LE(png.length, 14);
  header.writeUInt32LE(22, 18);
  return Buffer.concat([header, png]);
}

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

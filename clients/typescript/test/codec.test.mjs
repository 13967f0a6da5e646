// The codec against conformance/vectors: every golden frame decodes to the message its JSON
// describes, and re-encodes to the same bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { equals, fromJson, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, decodeFrames, encodeFrame, encodeVarint, decodeVarint } from "../dist/index.js";
import { repoRoot } from "./support.mjs";

const dir = join(repoRoot, "conformance/vectors");
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
const schemas = { "chatwire.v1.ClientFrame": ClientFrameSchema, "chatwire.v1.ServerFrame": ServerFrameSchema };

test("the manifest lists vectors of both frame types", () => {
  assert.ok(manifest.vectors.length >= 60, `${manifest.vectors.length} vectors`);
  assert.deepEqual(new Set(manifest.vectors.map((v) => v.message)), new Set(Object.keys(schemas)));
});

for (const vector of manifest.vectors) {
  test(`vector ${vector.name}: decode and re-encode byte for byte`, () => {
    const schema = schemas[vector.message];
    const bin = new Uint8Array(readFileSync(join(dir, vector.bin)));
    const frames = decodeFrames(schema, bin);
    assert.equal(frames.length, 1, "exactly one frame, no leftover bytes");
    const fromText = fromJson(schema, JSON.parse(readFileSync(join(dir, vector.json), "utf8")));
    assert.ok(equals(schema, frames[0], fromText), "binary and JSON decode to the same message");
    assert.deepEqual(encodeFrame(schema, fromText), bin, "encoding the JSON message gives the .bin");
    assert.deepEqual(encodeFrame(schema, frames[0]), bin, "re-encoding the decoded frame gives the .bin");
  });
}

test("varints: shortest form out, non-shortest forms in, 11-byte prefixes refused", () => {
  assert.deepEqual(encodeVarint(300), Uint8Array.from([0xac, 0x02]));
  assert.equal(decodeVarint(Uint8Array.from([0x80, 0x00]), 0).value, 0);
  assert.throws(() => decodeVarint(new Uint8Array(11).fill(0x80), 0));
  assert.throws(() => decodeFrames(ClientFrameSchema, Uint8Array.from([5, 1, 2])), /inside a frame/);
  const two = new Uint8Array([...encodeFrame(ClientFrameSchema, fromJson(ClientFrameSchema, { id: "1" })), 0]);
  assert.equal(decodeFrames(ClientFrameSchema, two).length, 2, "a zero-length frame is a default message");
  assert.equal(toBinary(ClientFrameSchema, decodeFrames(ClientFrameSchema, two)[1]).length, 0);
});

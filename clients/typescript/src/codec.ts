// The frame codec (docs/protocol.md section 2.1): a varint length prefix, then one protobuf
// message. Pure functions over bytes; no I/O, no clock.
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, type ClientFrame, type ServerFrame } from "./gen/chatwire/v1/frames_pb.js";

/** A frame's bytes could not be read. */
export class FrameDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameDecodeError";
  }
}

/** Encodes `value` as an unsigned LEB128 varint in its shortest form. */
export function encodeVarint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/** Reads a varint at `offset`: its value and the offset after it; throws on a malformed one. */
export function decodeVarint(bytes: Uint8Array, offset: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const at = offset + i;
    if (at >= bytes.length) throw new FrameDecodeError("length prefix ends early");
    const byte = bytes[at]!;
    if (i === 9 && byte > 1) throw new FrameDecodeError("length prefix exceeds 64 bits");
    value += (byte & 0x7f) * scale;
    scale *= 0x80;
    if (byte < 0x80) return { value, next: at + 1 };
  }
  throw new FrameDecodeError("length prefix longer than 10 bytes");
}

/** One frame of `schema`: prefix + message. */
export function encodeFrame<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Uint8Array {
  const body = toBinary(schema, message);
  const prefix = encodeVarint(body.length);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

/** Every whole frame of `bytes` (one WebSocket message may hold several); a partial frame throws. */
export function decodeFrames<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc>[] {
  const frames: MessageShape<Desc>[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const { value: length, next } = decodeVarint(bytes, offset);
    const end = next + length;
    if (end > bytes.length) throw new FrameDecodeError("message ends inside a frame");
    frames.push(fromBinary(schema, bytes.subarray(next, end)));
    offset = end;
  }
  return frames;
}

/** Encodes a client frame. */
export function encodeClientFrame(frame: ClientFrame): Uint8Array {
  return encodeFrame(ClientFrameSchema, frame);
}

/** Decodes every server frame of one WebSocket message. */
export function decodeServerFrames(bytes: Uint8Array): ServerFrame[] {
  return decodeFrames(ServerFrameSchema, bytes);
}

// The WebSocket transport: moves whole binary messages, nothing else. Takes the browser's
// `WebSocket` or Node's `ws` (anything with the same constructor and `on*` handlers).

/** The part of the WebSocket API the client uses (browser `WebSocket` and `ws` both fit). */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A WebSocket constructor: `globalThis.WebSocket` or `import WebSocket from "ws"`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The binary subprotocol of protocol v1. */
export const SUBPROTOCOL = "chatwire.v1";

/** What the transport reports. */
export interface TransportHandlers {
  open(): void;
  message(bytes: Uint8Array): void;
  close(code: number, reason: string): void;
}

/** One WebSocket connection. */
export class Transport {
  private readonly socket: WebSocketLike;
  private closed = false;

  constructor(url: string, ctor: WebSocketConstructor, handlers: TransportHandlers) {
    this.socket = new ctor(url, [SUBPROTOCOL]);
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => handlers.open();
    this.socket.onmessage = (event) => {
      const bytes = toBytes(event.data);
      if (bytes) handlers.message(bytes);
    };
    this.socket.onerror = () => {};
    this.socket.onclose = (event) => {
      if (this.closed) return;
      this.closed = true;
      handlers.close(event.code, event.reason);
    };
  }

  /** Sends one binary message. */
  send(bytes: Uint8Array): void {
    if (!this.closed) this.socket.send(bytes);
  }

  /** Closes with a close code; the `close` handler still runs once. */
  close(code: number, reason = ""): void {
    try {
      this.socket.close(code, reason);
    } catch {
      // A socket still connecting may refuse a code; it is dropped either way.
      this.socket.close();
    }
  }
}

function toBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

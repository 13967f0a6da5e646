// The WebSocket transport: moves whole binary messages, nothing else. Takes the browser's
// `WebSocket` or Node's `ws` (anything with the same constructor and `on*` handlers).

/**
 * The part of the WebSocket API the client uses. The browser's `WebSocket` and the `ws`
 * package's class both fit: handler events are typed loosely (`any`) because the two declare
 * different event classes, and the client reads only `data`, `code`, `reason` and `message`.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((event: any) => void) | null;
}

/**
 * A WebSocket constructor: `globalThis.WebSocket` (DOM) or `import WebSocket from "ws"`; both
 * type-check as this under `strict` (with `@types/ws` in Node).
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The binary subprotocol of protocol v1. */
export const SUBPROTOCOL = "chatwire.v1";

/** How a connection ended, as far as the runtime tells. */
export interface TransportClose {
  /** The WebSocket close code (1006 when the connection failed without a close frame). */
  code: number;
  /** The close reason, or the runtime's error message when there was no close frame. */
  reason: string;
  /** The HTTP status that refused the upgrade, where the runtime exposes it (Node `ws`). */
  httpStatus?: number;
  /** Whether the WebSocket ever opened. */
  opened: boolean;
}

/** What the transport reports. */
export interface TransportHandlers {
  open(): void;
  message(bytes: Uint8Array): void;
  close(info: TransportClose): void;
}

/** One WebSocket connection. */
export class Transport {
  private readonly socket: WebSocketLike;
  private closed = false;
  private opened = false;
  private errorMessage = "";
  private httpStatus: number | undefined;
  private readonly handlers: TransportHandlers;

  constructor(url: string, ctor: WebSocketConstructor, handlers: TransportHandlers) {
    this.handlers = handlers;
    this.socket = new ctor(url, [SUBPROTOCOL]);
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => {
      this.opened = true;
      handlers.open();
    };
    this.socket.onmessage = (event: { data: unknown }) => {
      const bytes = toBytes(event.data);
      if (bytes) handlers.message(bytes);
    };
    this.socket.onerror = (event: { message?: unknown; error?: { message?: unknown } }) => {
      // Browsers give no detail; `ws` says "Unexpected server response: 404" when the HTTP
      // upgrade was refused, and names the network failure otherwise.
      const message = String(event?.error?.message ?? event?.message ?? "");
      if (message) this.errorMessage = message;
      const status = /Unexpected server response: (\d{3})/.exec(message);
      if (status) this.httpStatus = Number(status[1]);
    };
    this.socket.onclose = (event: { code: number; reason: string }) => {
      this.finish({ code: event.code, reason: event.reason || this.errorMessage, httpStatus: this.httpStatus, opened: this.opened });
    };
  }

  private finish(info: TransportClose): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers.close(info);
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

  /**
   * Gives up on a connection that has not opened (a connect timeout): reports the close at once,
   * whatever the runtime does with the socket later.
   */
  abandon(reason: string): void {
    this.close(1000, reason);
    this.finish({ code: 1006, reason, opened: this.opened });
  }
}

function toBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

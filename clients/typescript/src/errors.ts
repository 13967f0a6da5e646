// Typed failures of requests and sessions.
import { ErrorCode, CloseCode, type Error as ErrorMessage } from "./gen/chatwire/v1/errors_pb.js";
import { ERROR_CODE_NAMES, CLOSE_CODE_NAMES, type RequestKind } from "./generated/api.js";

/** The server answered a request with an error (`Reply.result.error`). */
export class ChatwireError extends Error {
  /** The error code; an unknown number is to be treated like `ErrorCode.INTERNAL`. */
  readonly code: ErrorCode;
  /** True when the same request may succeed if sent again unchanged. */
  readonly retryable: boolean;
  /** When non-zero, wait at least this long before retrying. */
  readonly retryAfterMs: number;
  /** The request field to blame (proto path), or "". */
  readonly field: string;
  /** The request that failed. */
  readonly request: RequestKind;

  constructor(request: RequestKind, error: ErrorMessage) {
    const name = ERROR_CODE_NAMES[error.code] ?? `ERROR_CODE_${error.code}`;
    super(`${request}: ${name}${error.field ? ` (${error.field})` : ""}: ${error.message}`);
    this.name = "ChatwireError";
    this.code = error.code;
    this.retryable = error.retryable;
    this.retryAfterMs = error.retryAfterMs;
    this.field = error.field;
    this.request = request;
  }

  /** The code's short name, `NOT_FOUND`. */
  get codeName(): string {
    return ERROR_CODE_NAMES[this.code] ?? "INTERNAL";
  }
}

/** Why a request got no reply. */
export type NoReplyReason = "timeout" | "connection-lost" | "closed";

/**
 * A request got no reply: it timed out, the connection dropped with it in flight, or the client
 * was closed. Its outcome is unknown (docs/protocol.md R-5.2.4).
 */
export class NoReplyError extends Error {
  /** What happened. */
  readonly reason: NoReplyReason;
  /** The request. */
  readonly request: RequestKind;

  constructor(request: RequestKind, reason: NoReplyReason) {
    super(`${request}: no reply (${reason})`);
    this.name = "NoReplyError";
    this.reason = reason;
    this.request = request;
  }
}

/** The session ended for good (the server said not to reconnect, or `close()` was called). */
export class SessionClosedError extends Error {
  /** The close code, when the server gave one. */
  readonly code: CloseCode | undefined;

  constructor(code: CloseCode | undefined, reason: string) {
    const name = code === undefined ? "closed" : (CLOSE_CODE_NAMES[code] ?? String(code));
    super(`session closed: ${name}${reason ? `: ${reason}` : ""}`);
    this.name = "SessionClosedError";
    this.code = code;
  }
}

/** What made a connection attempt fail. */
export type ConnectionFailure = "timeout" | "http" | "refused" | "network" | "token" | "closed";

/**
 * A connection attempt failed: emitted as an `error` event for every failed attempt, carried by
 * the `reconnecting` state as `lastError`, and the rejection of `connect()` / `open()` when the
 * client gives up (auth refused, HTTP 401/403/404 on the upgrade, or `maxAttempts` reached).
 */
export class ConnectionError extends Error {
  /** What failed. */
  readonly failure: ConnectionFailure;
  /** The attempt (1-based, counted since the last established session). */
  readonly attempt: number;
  /** The WebSocket close code, when the connection closed (1006: no close frame). */
  readonly closeCode: number | undefined;
  /** The HTTP status that refused the upgrade, where the runtime exposes it (Node `ws`). */
  readonly httpStatus: number | undefined;
  /** The server's refusal of `Connect`, when it answered one (`ERROR_CODE_UNAUTHENTICATED`). */
  readonly refusal: ChatwireError | undefined;

  constructor(init: { failure: ConnectionFailure; attempt: number; message: string; closeCode?: number; httpStatus?: number; refusal?: ChatwireError; cause?: unknown }) {
    super(`connection attempt ${init.attempt} failed (${init.failure}): ${init.message}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "ConnectionError";
    this.failure = init.failure;
    this.attempt = init.attempt;
    this.closeCode = init.closeCode;
    this.httpStatus = init.httpStatus;
    this.refusal = init.refusal;
  }
}

export { ErrorCode, CloseCode };

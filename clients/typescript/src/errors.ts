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

export { ErrorCode, CloseCode };

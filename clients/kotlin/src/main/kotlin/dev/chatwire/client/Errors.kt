// Typed failures of requests and sessions.
package dev.chatwire.client

/** The server refused a request (`Reply.result.error`). */
public class ChatwireException(
  /** The request that failed. */
  public val request: RequestKind,
  /** The error as the server sent it. */
  public val error: chatwire.v1.Error,
) : Exception(describe(request, error)) {
  /** The error code; a number this SDK does not know reads as `INTERNAL` (see [codeNumber]). */
  public val code: ChatwireErrorCode = ChatwireErrorCode.of(error.code.value) ?: ChatwireErrorCode.INTERNAL

  /** The code's number as sent. */
  public val codeNumber: Int = error.code.value

  /** True when the same request may succeed if sent again unchanged. */
  public val retryable: Boolean = error.retryable

  /** When non-zero, wait at least this many milliseconds before retrying. */
  public val retryAfterMs: Long = error.retry_after_ms.toLong()

  /** The request field to blame (proto path), or "". */
  public val field: String = error.field_

  private companion object {
    fun describe(request: RequestKind, error: chatwire.v1.Error): String {
      val name = ChatwireErrorCode.of(error.code.value)?.name ?: "ERROR_CODE_${error.code.value}"
      val field = if (error.field_.isEmpty()) "" else " (${error.field_})"
      return "${request.rpc}: $name$field: ${error.message}"
    }
  }
}

/**
 * A request got no reply: it timed out, the connection dropped with it in flight, or the client
 * was closed. Its outcome is unknown (docs/protocol.md R-5.2.4).
 */
public class NoReplyException(
  /** The request. */
  public val request: RequestKind,
  /** What happened. */
  public val reason: Reason,
) : Exception("${request.rpc}: no reply (${reason.name.lowercase()})") {
  /** Why no reply came. */
  public enum class Reason { TIMEOUT, CONNECTION_LOST, CLOSED }
}

/** The session ended for good: the server said not to reconnect, attempts ran out, or `close()`. */
public class SessionClosedException(
  /** The close code, when there was one. */
  public val closeCode: Int?,
  /** Why. */
  public val reason: String,
) : Exception("session closed: ${closeCode?.let { ChatwireCloseCode.of(it)?.name ?: it.toString() } ?: "closed"}${if (reason.isEmpty()) "" else ": $reason"}") {
  /** The close code by name, when known. */
  public val code: ChatwireCloseCode? get() = closeCode?.let { ChatwireCloseCode.of(it) }
}

/** The server answered a request with another request's result: a protocol violation. */
public class UnexpectedReplyException(public val request: RequestKind) :
  Exception("${request.rpc}: the reply carries another request's result")

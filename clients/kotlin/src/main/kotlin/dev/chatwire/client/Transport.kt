// The WebSocket transport over OkHttp: moves whole binary messages, nothing else. OkHttp's
// callbacks run on its own threads and only hand events to the client's loop.
package dev.chatwire.client

import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.Response
import okhttp3.WebSocket
import okhttp3.WebSocketListener
import okio.ByteString
import okio.ByteString.Companion.toByteString

/** The binary subprotocol of protocol v1. */
public const val SUBPROTOCOL: String = "chatwire.v1"

/**
 * What a transport reports, from its own threads (the client only queues the calls). `closed`
 * comes exactly once per transport, also after the client's own `close`.
 */
public interface TransportListener {
  /** The connection is up: the client sends Connect. */
  public fun opened(transport: ChatwireTransport)

  /** One or more whole frames (section 2.1), in order. */
  public fun message(transport: ChatwireTransport, bytes: ByteArray)

  /** The connection ended with a close code (1006 when there was none) and a reason. */
  public fun closed(transport: ChatwireTransport, code: Int, reason: String)
}

/** One connection that carries frames: WebSocket (default) or QUIC (`dev.chatwire.client.quic`). */
public interface ChatwireTransport {
  /** Queues bytes of whole frames; false when the connection is gone. Never blocks. */
  public fun send(bytes: ByteArray): Boolean

  /** Sends one frame as an unreliable datagram; false when the transport has none. */
  public fun sendDatagram(bytes: ByteArray): Boolean = false

  /** Closes with a close code; the listener's `closed` still comes once. */
  public fun close(code: Int, reason: String)
}

/** Opens a transport to `url` (a client calls it once per connection attempt). */
public fun interface TransportFactory {
  public fun open(url: String, listener: TransportListener): ChatwireTransport
}

/** One WebSocket connection. */
internal class WebSocketTransport(http: OkHttpClient, url: String, private val events: TransportListener) : ChatwireTransport {
  @Volatile private var done = false
  private val socket: WebSocket

  init {
    val request = Request.Builder().url(url).header("Sec-WebSocket-Protocol", SUBPROTOCOL).build()
    socket = http.newWebSocket(request, object : WebSocketListener() {
      override fun onOpen(webSocket: WebSocket, response: Response) {
        events.opened(this@WebSocketTransport)
      }

      override fun onMessage(webSocket: WebSocket, bytes: ByteString) {
        events.message(this@WebSocketTransport, bytes.toByteArray())
      }

      override fun onMessage(webSocket: WebSocket, text: String) {
        // Protocol v1 is binary only: a text message is a protocol violation.
        close(ChatwireCloseCode.PROTOCOL_VIOLATION.number, "text message")
      }

      override fun onClosing(webSocket: WebSocket, code: Int, reason: String) {
        webSocket.close(code, null)
        finish(code, reason)
      }

      override fun onClosed(webSocket: WebSocket, code: Int, reason: String) {
        finish(code, reason)
      }

      override fun onFailure(webSocket: WebSocket, t: Throwable, response: Response?) {
        finish(1006, t.message ?: t.javaClass.simpleName)
      }
    })
  }

  private fun finish(code: Int, reason: String) {
    if (done) return
    synchronized(this) {
      if (done) return
      done = true
    }
    events.closed(this, code, reason)
  }

  /** Queues one binary message; false when the socket is gone. Never blocks. */
  override fun send(bytes: ByteArray): Boolean = !done && socket.send(bytes.toByteString())

  /** Closes with a close code; the `closed` event still comes once. */
  override fun close(code: Int, reason: String) {
    val sent = try {
      socket.close(code, reason.take(120))
    } catch (e: IllegalArgumentException) {
      false
    }
    if (!sent) socket.cancel()
    // The client treats the connection as gone now, not when the peer answers the close.
    finish(code, reason)
  }
}

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

/** What a transport reports; called from OkHttp's threads. */
internal interface TransportEvents {
  fun opened(transport: WebSocketTransport)
  fun message(transport: WebSocketTransport, bytes: ByteArray)
  fun closed(transport: WebSocketTransport, code: Int, reason: String)
}

/** One WebSocket connection. */
internal class WebSocketTransport(http: OkHttpClient, url: String, private val events: TransportEvents) {
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
  fun send(bytes: ByteArray): Boolean = !done && socket.send(bytes.toByteString())

  /** Closes with a close code; the `closed` event still comes once. */
  fun close(code: Int, reason: String) {
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

// The optional QUIC transport (Netty's QUIC codec) against the real server's QUIC endpoint: the
// SDK works unchanged over it (sends, resume after SIGKILL, exactly once in order), typing goes as
// datagrams when negotiated, and a server whose certificate is not the pinned one is refused.
package dev.chatwire.client

import chatwire.v1.CreateGroupRequest
import dev.chatwire.client.quic.QuicTransportFactory
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.collect
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.takeWhile
import kotlinx.coroutines.launch
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class QuicTest {
  @Test
  fun `over QUIC - sends survive a SIGKILL, typing travels as datagrams`() = within {
    // A killed server sends no CONNECTION_CLOSE: the client notices it by the session heartbeat
    // (two silent intervals, R-4.6), here 2 s instead of the default 15 s to keep the test short.
    val server = TestServer.start(quic = true, env = mapOf("CHATWIRE_SESSION__HEARTBEAT_INTERVAL_MS" to "2000"))
    val quicUrl = server.quicUrl ?: error("the server announced no QUIC address")
    val factory = QuicTransportFactory(server.certificateDer)
    val token = server.token("alice")
    val alice = ChatwireClient.connect(
      ClientConfig(url = quicUrl, token = { token }, backoff = Backoff(50, 500), capabilities = listOf(TYPING_DATAGRAMS), transportFactory = factory),
    )
    val bob = server.client("bob")
    try {
      assertTrue(TYPING_DATAGRAMS in alice.session!!.capabilities, "granted: ${alice.session!!.capabilities}")
      val room = alice.createGroup(CreateGroupRequest(name = "quic", member_ids = listOf("bob"))).room!!.id
      alice.subscribeRoom(room)
      bob.subscribeRoom(room)

      val total = 100
      val texts = ArrayList<String>()
      val collector = launch(start = CoroutineStart.UNDISPATCHED) {
        bob.roomEvents.filter { it.room_id == room && it.message_created != null }.takeWhile {
          texts.add(it.message_created!!.content!!.text)
          texts.size < total
        }.collect()
      }
      val states = ArrayList<ConnectionState>()
      val watcher = launch(start = CoroutineStart.UNDISPATCHED) { alice.state.collect { states.add(it) } }
      val messages = ArrayList<OutgoingMessage>()
      for (i in 0 until total) {
        messages.add(alice.sendMessage(room, "q$i"))
        if (i == 50) {
          messages[20].awaitSent()
          server.kill()
          server.restart()
        }
      }
      messages.forEach { it.awaitSent() }
      collector.join()
      assertEquals((0 until total).map { "q$it" }, texts, "every message once, in order")
      assertTrue(states.any { it is ConnectionState.Reconnecting }, "$states")
      watcher.cancel()
      alice.state.firstWithin("connected over QUIC again") { it is ConnectionState.Connected }

      // Alice types (a datagram), Bob sees it; Bob types (a request), Alice sees it.
      val bobSees = async(start = CoroutineStart.UNDISPATCHED) {
        bob.events.filterIsInstance<ChatwireEvent.TypingChanged>().firstWithin("alice typing at bob") { it.value.user_id == "alice" && it.value.active }
      }
      val aliceSees = async(start = CoroutineStart.UNDISPATCHED) {
        alice.events.filterIsInstance<ChatwireEvent.TypingChanged>().firstWithin("bob typing at alice") { it.value.user_id == "bob" && it.value.active }
      }
      assertTrue(alice.sendTyping(room, true), "sent as a datagram")
      assertEquals(room, bobSees.await().value.room_id)
      assertEquals(false, bob.sendTyping(room, true), "WebSocket: a Typing request")
      assertEquals(room, aliceSees.await().value.room_id)
    } finally {
      alice.closeAndJoin()
      bob.closeAndJoin()
      server.stop()
      factory.close()
    }
  }

  @Test
  fun `a QUIC server with another certificate is refused`() = within {
    val server = TestServer.start(quic = true)
    val other = TestServer.start(quic = true) // its own development certificate
    val factory = QuicTransportFactory(other.certificateDer)
    try {
      val client = ChatwireClient(ClientConfig(url = server.quicUrl!!, token = { server.token("alice") }, maxAttempts = 1, transportFactory = factory))
      val e = runCatching { client.open() }.exceptionOrNull()
      assertTrue(e is SessionClosedException, "$e")
      val reason = (client.state.value as ConnectionState.Closed).reason
      assertTrue(reason.contains("handshake", ignoreCase = true), reason)
    } finally {
      server.stop()
      other.stop()
      factory.close()
    }
  }
}

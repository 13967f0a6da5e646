// What a mobile app does to the client: background (close after a grace period), foreground and
// network change (reconnect at once), and the limits of reconnecting (connectTimeout, maxAttempts).
package dev.chatwire.client

import chatwire.v1.CreateGroupRequest
import java.net.ServerSocket
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.collect
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class LifecycleTest {
  @Test
  fun `background closes after the grace period, foreground reconnects and resumes`() = within {
    val server = TestServer.start()
    val alice = server.client("alice")
    val bob = server.client("bob")
    try {
      val room = alice.createGroup(CreateGroupRequest(name = "life", member_ids = listOf("bob"))).room!!.id
      alice.subscribeRoom(room)
      alice.onBackground(graceMs = 50)
      alice.state.firstWithin("idle in the background") { it is ConnectionState.Idle }
      // While Alice is away Bob posts, and Alice queues a message.
      val bobSeq = bob.sendMessage(room, "while you were away").awaitSent()
      val queued = alice.sendMessage(room, "queued in the background")
      assertEquals(MessageStatus.PENDING, queued.status.value)
      val caughtUp = async(start = CoroutineStart.UNDISPATCHED) {
        alice.roomEvents.firstWithin("bob's message after foreground") { it.seq == bobSeq }
      }
      alice.onForeground()
      alice.state.firstWithin("connected again") { it is ConnectionState.Connected }
      assertEquals("while you were away", caughtUp.await().message_created!!.content!!.text)
      assertTrue(queued.awaitSent() > bobSeq)

      // A network change replaces the connection at once: a new session.
      val before = alice.session!!.session_id
      val next = async(start = CoroutineStart.UNDISPATCHED) { alice.sessions.firstWithin("a new session") { true } }
      alice.onNetworkChanged()
      val after = next.await()
      assertTrue(after.session_id != before, "$before -> ${after.session_id}")

      // onForeground during the grace period keeps the connection.
      alice.onBackground(graceMs = 60_000)
      alice.onForeground()
      assertEquals(7L, alice.ping(chatwire.v1.PingRequest(client_time_ms = 7)).client_time_ms)
      assertEquals(after.session_id, alice.session!!.session_id, "the same session")
    } finally {
      alice.closeAndJoin()
      bob.closeAndJoin()
      server.stop()
    }
  }

  @Test
  fun `maxAttempts ends a client that cannot connect`() = within {
    val deadPort = ServerSocket(0).use { it.localPort }
    val client = ChatwireClient(ClientConfig(url = "ws://127.0.0.1:$deadPort/v1/ws", token = { "t" }, backoff = Backoff(10, 50), maxAttempts = 3))
    val states = ArrayList<ConnectionState>()
    val watcher = launch(start = CoroutineStart.UNDISPATCHED) { client.state.collect { states.add(it) } }
    val e = runCatching { client.open() }.exceptionOrNull()
    assertTrue(e is SessionClosedException, "$e")
    assertTrue((client.state.value as ConnectionState.Closed).reason.contains("3 attempts"), "${client.state.value}")
    assertEquals(2, states.count { it is ConnectionState.Reconnecting }, "$states")
    watcher.cancel()
  }

  @Test
  fun `connectTimeout abandons a server that never answers the upgrade`() = within {
    ServerSocket(0).use { silent -> // accepts TCP (backlog) and never speaks
      val client = ChatwireClient(
        ClientConfig(url = "ws://127.0.0.1:${silent.localPort}/v1/ws", token = { "t" }, connectTimeoutMs = 300, backoff = Backoff(10, 50), maxAttempts = 2),
      )
      val e = runCatching { client.open() }.exceptionOrNull()
      assertTrue(e is SessionClosedException, "$e")
      assertTrue((client.state.value as ConnectionState.Closed).reason.contains("no session after 300 ms"), "${client.state.value}")
    }
  }

  @Test
  fun `close cancels everything and completes the flows`() = within {
    val server = TestServer.start()
    val client = server.client("alice")
    try {
      val events = async(start = CoroutineStart.UNDISPATCHED) { client.events.toList() }
      val pending = async(start = CoroutineStart.UNDISPATCHED) { runCatching { client.subscribeRoom("no-such-room") } }
      client.closeAndJoin()
      assertTrue(events.await().size >= 0, "the events flow completed")
      assertTrue(pending.await().isFailure)
      assertTrue(client.state.value is ConnectionState.Closed)
      val late = runCatching { client.sendMessage("r", "after close") }.exceptionOrNull()
      assertTrue(late is SessionClosedException, "$late")
    } finally {
      server.stop()
    }
  }
}

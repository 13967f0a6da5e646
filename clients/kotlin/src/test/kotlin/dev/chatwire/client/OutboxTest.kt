// The file-backed outbox: sends made while the server is down survive the client's end (an app
// restart) and a new client with the same folder delivers them, once each.
package dev.chatwire.client

import chatwire.v1.CreateGroupRequest
import java.nio.file.Files
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.collect
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.takeWhile
import kotlinx.coroutines.launch
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class OutboxTest {
  @Test
  fun `the file outbox survives a client restart`() = within {
    val server = TestServer.start()
    val dir = Files.createTempDirectory("chatwire-outbox-").toFile()
    val follower = server.client("bob")
    try {
      val alice = server.client("alice")
      val room = alice.createGroup(CreateGroupRequest(name = "offline", member_ids = listOf("bob"))).room!!.id
      alice.closeAndJoin()
      follower.subscribeRoom(room)
      val texts = ArrayList<String>()
      val collector = launch(start = CoroutineStart.UNDISPATCHED) {
        follower.roomEvents.filter { it.room_id == room && it.message_created != null }.takeWhile {
          texts.add(it.message_created!!.content!!.text)
          texts.size < 3
        }.collect()
      }

      // First run of the app: the server cannot be reached (a port nothing listens on).
      val token = server.token("alice")
      val deadPort = java.net.ServerSocket(0).use { it.localPort }
      val first = ChatwireClient(
        ClientConfig(url = "ws://127.0.0.1:$deadPort/v1/ws", token = { token }, backoff = Backoff(50, 200), outboxStore = FileOutboxStore(dir)),
      )
      val opening = async(start = CoroutineStart.UNDISPATCHED) { runCatching { first.open() } }
      val sent = (1..3).map { first.sendMessage(room, "offline $it") }
      first.state.firstWithin("a failed attempt") { it is ConnectionState.Reconnecting }
      assertTrue(sent.all { it.status.value == MessageStatus.PENDING })
      first.closeAndJoin()
      assertTrue(opening.await().exceptionOrNull() is SessionClosedException)
      assertEquals(3, dir.listFiles()!!.count { it.name.endsWith(".send") }, "three sends kept on disk")
      assertTrue(sent.all { it.status.value == MessageStatus.PENDING }, "kept, not failed")

      // Second run: same folder, a reachable server.
      val second = ChatwireClient(ClientConfig(url = server.url, token = { token }, backoff = Backoff(50, 200), outboxStore = FileOutboxStore(dir)))
      second.open()
      collector.join()
      assertEquals(listOf("offline 1", "offline 2", "offline 3"), texts, "each once, in order")
      // Resent with the same client_msg_ids: the server's echoes carry them.
      val stored = follower.history(chatwire.v1.HistoryRequest(room_id = room, limit = 10)).messages.sortedBy { it.seq }
      assertEquals(sent.map { it.clientMsgId }, stored.map { it.client_msg_id }, "stored once each, with the first run's ids")
      // Acknowledged sends leave the folder.
      waitUntilEmpty(dir)
      second.closeAndJoin()
    } finally {
      follower.closeAndJoin()
      server.stop()
      dir.deleteRecursively()
    }
  }

  /** The store removes acknowledged sends asynchronously: poll the folder until the deadline. */
  private suspend fun waitUntilEmpty(dir: java.io.File) {
    val until = System.currentTimeMillis() + DEADLINE_MS
    while (dir.listFiles()!!.any { it.name.endsWith(".send") }) {
      check(System.currentTimeMillis() < until) { "acknowledged sends still on disk: ${dir.list()!!.toList()}" }
      kotlinx.coroutines.delay(20)
    }
  }
}

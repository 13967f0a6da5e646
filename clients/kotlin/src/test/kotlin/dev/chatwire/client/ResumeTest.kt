// The server dies (SIGKILL) or drains (SIGTERM) in the middle of 250 sends: the outbox resends
// with the same client_msg_id, the follower resumes from its last seq, and every message arrives
// exactly once, in order.
package dev.chatwire.client

import chatwire.v1.CreateGroupRequest
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.flow.collect
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.launch
import kotlinx.coroutines.flow.takeWhile
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class ResumeTest {
  @Test
  fun `SIGKILL in the middle of 250 sends - every message once, in order`() = run(kill = true)

  @Test
  fun `SIGTERM in the middle of 250 sends - every message once, in order`() = run(kill = false)

  private fun run(kill: Boolean) = within {
    val server = TestServer.start()
    val sender = server.client("alice")
    val follower = server.client("bob")
    try {
      val room = sender.createGroup(CreateGroupRequest(name = "resume", member_ids = listOf("bob"))).room!!.id
      follower.subscribeRoom(room)
      val texts = ArrayList<String>()
      val seqs = ArrayList<Long>()
      val total = 250
      val collector = launch(start = CoroutineStart.UNDISPATCHED) {
        follower.roomEvents.filter { it.room_id == room && it.message_created != null }.takeWhile {
          texts.add(it.message_created!!.content!!.text)
          seqs.add(it.seq)
          texts.size < total
        }.collect()
      }
      val states = ArrayList<ConnectionState>()
      val watcher = launch(start = CoroutineStart.UNDISPATCHED) { sender.state.collect { states.add(it) } }
      val messages = ArrayList<OutgoingMessage>()
      for (i in 0 until total) {
        messages.add(sender.sendMessage(room, "m$i"))
        if (i == 120) {
          // Some sends are acknowledged, some in flight, some queued: the server goes away now.
          messages[60].awaitSent()
          if (kill) server.kill() else server.terminate()
          server.restart()
        }
      }
      val seqsSent = messages.map { it.awaitSent() }
      collector.join()
      assertEquals((0 until total).map { "m$it" }, texts, "every message once, in order, at the follower")
      assertEquals(seqs.sorted(), seqs)
      assertEquals(seqsSent, seqs, "the sender's seqs are the follower's")
      assertTrue(states.any { it is ConnectionState.Reconnecting }, "the sender reconnected: $states")
      assertTrue(sender.state.value is ConnectionState.Connected)
      watcher.cancel()
    } finally {
      sender.closeAndJoin()
      follower.closeAndJoin()
      server.stop()
    }
  }
}

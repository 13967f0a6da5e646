// Two clients through a real server: receipts move message status to delivered and read; typing
// reaches the other member; the connection state is a StateFlow.
package dev.chatwire.client

import chatwire.v1.AddMembersRequest
import chatwire.v1.CreateGroupRequest
import chatwire.v1.MarkDeliveredRequest
import chatwire.v1.MarkReadRequest
import chatwire.v1.OpenDirectRequest
import chatwire.v1.TypingRequest
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.filterIsInstance
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class ChatTest {
  @Test
  fun `receipts and typing between two clients`() = within {
    val server = TestServer.start()
    val alice = server.client("alice")
    val bob = server.client("bob")
    try {
      val room = alice.openDirect(OpenDirectRequest(user_id = "bob")).room!!.id
      alice.subscribeRoom(room)
      bob.subscribeRoom(room)

      // Bob sees Alice's message once, as a room event.
      val seen = async(start = CoroutineStart.UNDISPATCHED) {
        bob.roomEvents.firstWithin("alice's message at bob") { it.room_id == room && it.message_created?.content?.text == "hi bob" }
      }
      val message = alice.sendMessage(room, "hi bob")
      val seq = message.awaitSent()
      assertEquals(seq, seen.await().seq)
      assertEquals(MessageStatus.SENT, message.status.value)

      bob.markDelivered(MarkDeliveredRequest(room_id = room, seq = seq))
      message.status.firstWithin("delivered") { it == MessageStatus.DELIVERED || it == MessageStatus.READ }
      bob.markRead(MarkReadRequest(room_id = room, seq = seq))
      message.status.firstWithin("read") { it == MessageStatus.READ }
      assertEquals(MessageStatus.READ, message.status.value)
      val watermarks = alice.room(room)!!.receipts["bob"]!!
      assertEquals(seq, watermarks.read)

      // A reply reads as read (R-12.1.6: a Send moves the sender's watermarks to its seq).
      val second = alice.sendMessage(room, "still there?")
      val secondSeq = second.awaitSent()
      val answered = bob.sendMessage(room, "yes").awaitSent()
      assertTrue(answered > secondSeq)
      second.status.firstWithin("read by the reply") { it == MessageStatus.READ }

      // Typing: Bob starts, Alice sees it as a typed event.
      val typing = async(start = CoroutineStart.UNDISPATCHED) {
        alice.events.filterIsInstance<ChatwireEvent.TypingChanged>().firstWithin("bob typing") { it.value.user_id == "bob" && it.value.active }
      }
      bob.typing(TypingRequest(room_id = room, active = true))
      val event = typing.await().value
      assertEquals(room, event.room_id)
      assertTrue(event.expires_in_ms > 0)
      assertTrue(alice.state.value is ConnectionState.Connected)
    } finally {
      alice.closeAndJoin()
      bob.closeAndJoin()
      server.stop()
    }
    assertTrue(alice.state.value is ConnectionState.Closed)
  }

  @Test
  fun `members and receipts of a room larger than a page are all loaded`() = within {
    val server = TestServer.start()
    val alice = server.client("alice")
    try {
      val others = (1..149).map { "user-%03d".format(it) }
      val room = alice.createGroup(CreateGroupRequest(name = "big")).room!!.id
      for (batch in others.chunked(50)) alice.addMembers(AddMembersRequest(room_id = room, user_ids = batch))
      val snapshot = alice.subscribeRoom(room)
      assertEquals(150, snapshot.members.size, "every page of ListMembers (a page is at most 100)")
      assertTrue(snapshot.members.containsAll(others))
    } finally {
      alice.closeAndJoin()
      server.stop()
    }
  }
}

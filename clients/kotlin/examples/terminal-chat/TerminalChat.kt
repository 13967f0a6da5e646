// A small terminal chat on the Chatwire Kotlin SDK (JVM). Run it with the server's WebSocket URL, a
// token and the user to talk to:
//
//   CHATWIRE_URL=ws://127.0.0.1:8080/v1/ws CHATWIRE_TOKEN=$(chatwire token --user alice) \
//     java -cp ... TerminalChatKt bob
//
// Every line you type is sent; what the other user writes is printed as `user: text`. `/quit`
// waits until everything you typed is stored by the server, then exits.
import chatwire.v1.OpenDirectRequest
import dev.chatwire.client.ChatwireClient
import dev.chatwire.client.ClientConfig
import dev.chatwire.client.ConnectionState
import dev.chatwire.client.OutgoingMessage
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.cancelChildren
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext

fun main(args: Array<String>) = runBlocking {
  val peer = args.firstOrNull() ?: error("usage: TerminalChatKt <user to talk to>")
  val token = System.getenv("CHATWIRE_TOKEN") ?: error("CHATWIRE_TOKEN is not set")
  val client = ChatwireClient.connect(ClientConfig(url = System.getenv("CHATWIRE_URL") ?: "ws://127.0.0.1:8080/v1/ws", token = { token }))
  val me = client.userId
  val room = client.openDirect(OpenDirectRequest(user_id = peer)).room!!.id

  // Print the room as it arrives: replayed history first, then live messages, each once.
  val printer = launch(start = CoroutineStart.UNDISPATCHED) {
    client.roomEvents.collect { event ->
      val text = event.message_created?.content?.text ?: return@collect
      if (event.room_id == room && event.sender != me) println("${event.sender}: $text")
    }
  }
  launch(start = CoroutineStart.UNDISPATCHED) {
    client.state.collect { if (it is ConnectionState.Reconnecting) println("(reconnecting: ${it.cause})") }
  }
  client.subscribeRoom(room)
  println("chatting with $peer as $me; /quit to leave")

  val sent = ArrayList<OutgoingMessage>()
  while (true) {
    val line = withContext(Dispatchers.IO) { readLine() } ?: "/quit"
    if (line == "/quit") break
    if (line.isNotBlank()) sent.add(client.sendMessage(room, line))
  }
  for (message in sent) message.awaitSent()
  println("sent ${sent.size} message(s)")
  client.closeAndJoin()
  printer.join()
  coroutineContext.cancelChildren()
}

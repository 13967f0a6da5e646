// The SDK against `chatwire-conformance client-harness` (docs/conformance.md, "Checking a
// client"): for each scenario the test starts the harness, reads its one-line JSON "ready"
// message, drives the real SDK through its public API as the scenario's client script asks, waits
// for the harness to exit and asserts its verdict: exit status 0, `passed`, and every check passed
// (SHOULDs included). Verdicts are kept under $CHATWIRE_ARTIFACTS/kotlin-harness (default
// target/harness-verdicts). A missing harness binary fails the tests.
package dev.chatwire.client

import java.io.File
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.cancelChildren
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.collect
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.takeWhile
import kotlinx.coroutines.launch
import kotlinx.coroutines.runInterruptible
import kotlinx.coroutines.withTimeoutOrNull
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource

class HarnessTest {
  private val harnessBin = System.getenv("CHATWIRE_CONFORMANCE_BIN")?.let { File(it) } ?: File(targetDir, "debug/chatwire-conformance")
  private val verdicts = File(System.getenv("CHATWIRE_ARTIFACTS")?.let { File(it, "kotlin-harness").path } ?: "target/harness-verdicts")

  private class Ready(val json: String) {
    fun field(name: String): String = Regex("\"$name\":\"([^\"]*)\"").find(json)?.groupValues?.get(1) ?: error("no $name in $json")
    val url get() = field("url")
    val room get() = field("room_id")
    val reportRoom get() = field("report_room_id")
  }

  /** A client of the harness: any token works; a function, so every connection asks for one. */
  private class HarnessClient(ready: Ready) {
    val tokens = AtomicInteger()
    val client = ChatwireClient(
      ClientConfig(url = ready.url, token = { "harness-token-${tokens.incrementAndGet()}" }, backoff = Backoff(100, 1000)),
    )
  }

  /** Follows `room` from seq 0; returns the seqs surfaced as room events once `last` is among them. */
  private suspend fun follow(client: ChatwireClient, room: String, last: Long): List<Long> = coroutineScope {
    val applied = ArrayList<Long>()
    val seen = launch(start = CoroutineStart.UNDISPATCHED) {
      client.roomEvents.filter { it.room_id == room }.takeWhile {
        applied.add(it.seq)
        it.seq != last
      }.collect()
    }
    client.subscribeRoom(room, afterSeq = 0)
    seen.join()
    applied
  }

  private suspend fun behave(scenario: String, ready: Ready, clients: MutableList<ChatwireClient>, errors: MutableList<String>) = coroutineScope {
    val h = HarnessClient(ready)
    val client = h.client
    clients.add(client)
    // Background failures (a resume, a refresh) and state changes: shown when a scenario fails.
    launch(start = CoroutineStart.UNDISPATCHED) { client.errors.collect { errors.add("${it.what}: ${it.cause}") } }
    launch(start = CoroutineStart.UNDISPATCHED) { client.state.collect { errors.add("state $it") } }
    when (scenario) {
      "drop-mid-request" -> {
        client.open()
        // The connection drops with the Send in flight; the outbox resends it after the reconnect.
        val message = client.sendMessage(ready.room, "hello")
        message.awaitSent()
        assertEquals(MessageStatus.SENT, message.status.value)
      }
      "ack-duplicated" -> {
        client.open()
        val one = client.sendMessage(ready.room, "one")
        one.awaitSent()
        val two = client.sendMessage(ready.room, "two")
        two.awaitSent()
        assertNotEquals(one.clientMsgId, two.clientMsgId)
      }
      "seq-gap", "duplicate-event" -> {
        client.open()
        val applied = follow(client, ready.room, if (scenario == "seq-gap") 6 else 4)
        client.sendMessage(ready.reportRoom, "applied:${applied.joinToString(",")}").awaitSent()
      }
      "token-expiring" -> coroutineScope {
        val refreshed = async(start = CoroutineStart.UNDISPATCHED) { client.tokenRefreshes.firstWithin("token refresh") { true } }
        client.open()
        refreshed.await()
        // Connect's token, then the refreshed one from the same function.
        assertEquals(2, h.tokens.get())
      }
      "server-draining" -> coroutineScope {
        client.open()
        // The Disconnect follows the Subscribe reply at once: wait for seq 3, then the next session.
        val next = async(start = CoroutineStart.UNDISPATCHED) { client.sessions.firstWithin("the next session") { true } }
        val third = async(start = CoroutineStart.UNDISPATCHED) {
          client.roomEvents.firstWithin("seq 3") { it.room_id == ready.room && it.seq == 3L }
        }
        // subscribeRoom (which then loads members and receipts) finishes only in a later session
        // the harness may not serve: it is not awaited.
        val subscribing = launch { runCatching { client.subscribeRoom(ready.room, afterSeq = 0) } }
        third.await()
        next.await()
        assertEquals(3L, client.room(ready.room)!!.lastSeq)
        subscribing.cancel()
      }
      "slow-reads" -> {
        client.open()
        val messages = (1..8).map { client.sendMessage(ready.room, "m$it") }
        messages.map { it.sent }.awaitAll()
        assertEquals(8, messages.map { it.clientMsgId }.toSet().size)
      }
      else -> error("unknown scenario $scenario")
    }
    coroutineContext.cancelChildren()
  }

  @ParameterizedTest(name = "client-harness {0}: the SDK passes")
  @ValueSource(strings = ["drop-mid-request", "ack-duplicated", "seq-gap", "duplicate-event", "token-expiring", "server-draining", "slow-reads"])
  fun scenario(scenario: String) = within {
    assertTrue(harnessBin.canExecute(), "$harnessBin is missing: cargo build -p chatwire-conformance")
    verdicts.mkdirs()
    val verdictFile = File(verdicts, "$scenario.json")
    verdictFile.delete()
    val proc = ProcessBuilder(
      harnessBin.path, "client-harness", "--scenario", scenario, "--json", verdictFile.path, "--timeout", "30",
    ).redirectErrorStream(true).start()
    val lines = proc.inputStream.bufferedReader()
    val first = runInterruptible(Dispatchers.IO) { lines.readLine() } ?: error("the harness printed nothing")
    val ready = Ready(first)
    assertTrue(first.contains("\"ready\":true"), first)
    assertEquals(scenario, ready.field("scenario"))
    val clients = ArrayList<ChatwireClient>()
    var clientError: Throwable? = null
    val output = StringBuilder()
    val errors = java.util.Collections.synchronizedList(ArrayList<String>())
    val behaviour = launch { try { behave(scenario, ready, clients, errors) } catch (e: Throwable) { clientError = e } }
    runInterruptible(Dispatchers.IO) {
      lines.forEachLine { output.append(it).append('\n') }
      proc.waitFor(60, TimeUnit.SECONDS)
    }
    val code = proc.exitValue()
    // The harness's last frames may still be in the socket when its process exits: the client
    // gets 5 s to finish its script, then it is closed (anything still awaited ends with it).
    val finished = withTimeoutOrNull(5_000) { behaviour.join() } != null
    for (c in clients) c.close()
    if (!finished && clientError == null) {
      behaviour.cancel()
      clientError = AssertionError("the client script had not finished 5 s after the harness exited")
    }
    val verdict = if (verdictFile.exists()) verdictFile.readText() else ""
    val why = "exit $code\n$verdict\n$output\nclient: ${clientError?.stackTraceToString()}\nclient events: $errors"
    assertEquals(0, code, why)
    assertTrue(verdict.isNotEmpty(), "no JSON verdict\n$why")
    assertTrue(Regex("\"scenario\":\\s*\"$scenario\"").containsMatchIn(verdict), why)
    assertTrue(Regex("\"error\":\\s*null").containsMatchIn(verdict), why)
    val checks = Regex("\"passed\":\\s*(true|false)").findAll(verdict).map { it.groupValues[1] }.toList()
    assertTrue(checks.size >= 2, "no checks\n$why") // every check's, plus the verdict's own
    assertTrue(checks.all { it == "true" }, "a check failed\n$why")
    assertEquals(null, clientError, why)
  }
}

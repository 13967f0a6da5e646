// Test support: a real `chatwire serve` on 127.0.0.1:0 over a temporary data folder (the embedded
// default), tokens from `chatwire token`, and waits with deadlines on the SDK's flows.
package dev.chatwire.client

import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.withTimeout

/** The repository root (the `chatwire.repo` system property Surefire sets). */
val repoRoot: File = File(System.getProperty("chatwire.repo") ?: "../..").canonicalFile

/** Cargo's target folder: CARGO_TARGET_DIR, else the repository's target/. */
val targetDir: File = System.getenv("CARGO_TARGET_DIR")?.takeIf { it.isNotEmpty() }?.let { File(it) } ?: File(repoRoot, "target")

/** The server binary. */
val chatwireBin: File = System.getenv("CHATWIRE_BIN")?.let { File(it) } ?: File(targetDir, "debug/chatwire")

/** Generous deadline for anything a test waits on. */
const val DEADLINE_MS = 60_000L

private val serverEnv = mapOf(
  "CHATWIRE_QUIC__ENABLED" to "false",
  "CHATWIRE_LIMITS__RATE_SENDS__RATE_PER_MINUTE" to "1000000",
  "CHATWIRE_LIMITS__RATE_SENDS__BURST" to "100000",
  "CHATWIRE_LIMITS__RATE_ROOM_SENDS__RATE_PER_MINUTE" to "1000000",
  "CHATWIRE_LIMITS__RATE_ROOM_SENDS__BURST" to "100000",
  "CHATWIRE_LIMITS__RATE_REQUESTS__RATE_PER_MINUTE" to "1000000",
  "CHATWIRE_LIMITS__RATE_REQUESTS__BURST" to "100000",
  "CHATWIRE_LIMITS__RATE_TYPING__RATE_PER_MINUTE" to "1000000",
  "CHATWIRE_LIMITS__RATE_TYPING__BURST" to "100000",
  "CHATWIRE_LIMITS__RATE_CONNECTS_PER_IP__RATE_PER_MINUTE" to "1000000",
  "CHATWIRE_LIMITS__RATE_CONNECTS_PER_IP__BURST" to "100000",
  "RUST_LOG" to "warn",
)

/** A running `chatwire serve` process. */
class TestServer private constructor(
  val dataDir: File,
  private val ownDir: Boolean,
  private val quic: Boolean,
  private val extraEnv: Map<String, String>,
) {
  private var proc: Process? = null
  lateinit var addr: String
    private set
  private val log = StringBuffer()

  val url: String get() = "ws://$addr/v1/ws"

  /** The QUIC address (`quic://host:port`), when started with `quic = true`. */
  @Volatile var quicUrl: String? = null
    private set

  /** The server's (development) certificate, which a QUIC client pins. */
  val certificateDer: ByteArray get() = File(dataDir, "tls-cert.der").readBytes()

  companion object {
    /** Every server process started by this JVM: killed when it exits, whatever a test left. */
    private val started = java.util.concurrent.ConcurrentLinkedQueue<Process>()

    /** Temporary data folders, removed when the JVM exits (a timed-out test skips its `stop`). */
    private val folders = java.util.concurrent.ConcurrentLinkedQueue<File>()

    init {
      Runtime.getRuntime().addShutdownHook(
        Thread {
          started.forEach { if (it.isAlive) it.destroyForcibly().waitFor(5, TimeUnit.SECONDS) }
          folders.forEach { it.deleteRecursively() }
        },
      )
    }

    fun start(dataDir: File? = null, quic: Boolean = false, env: Map<String, String> = emptyMap()): TestServer {
      check(chatwireBin.canExecute()) { "$chatwireBin is missing: cargo build -p chatwire-server --bin chatwire" }
      val folder = dataDir ?: Files.createTempDirectory("chatwire-kt-").toFile().also { folders.add(it) }
      val server = TestServer(folder, dataDir == null, quic, env)
      server.spawn("127.0.0.1:0")
      return server
    }
  }

  private fun spawn(listen: String) {
    val pb = ProcessBuilder(chatwireBin.path, "serve", "--listen", listen, "--data-dir", dataDir.path)
    pb.environment().putAll(serverEnv)
    if (quic) pb.environment()["CHATWIRE_QUIC__ENABLED"] = "true"
    pb.environment().putAll(extraEnv)
    pb.redirectOutput(ProcessBuilder.Redirect.DISCARD)
    val p = pb.start()
    started.add(p)
    proc = p
    readAddress(p)
  }

  private fun readAddress(p: Process) {
    val found = java.util.concurrent.CompletableFuture<String>()
    val pattern = Regex("serving on http://(\\S+)")
    var http: String? = null // with QUIC, the address is taken once the QUIC line came too
    Thread {
      try {
        p.errorStream.bufferedReader().forEachLine { line ->
          log.append(line).append('\n')
          Regex("QUIC on udp://(\\S+)").find(line)?.let {
            quicUrl = "quic://" + it.groupValues[1]
            http?.let { addr -> found.complete(addr) }
          }
          pattern.find(line)?.let {
            http = it.groupValues[1]
            if (!quic) found.complete(it.groupValues[1])
          }
        }
      } catch (e: java.io.IOException) {
        // The process was killed and its pipe closed.
      }
      found.completeExceptionally(IllegalStateException("server exited before serving: $log"))
    }.apply { isDaemon = true }.start()
    addr = found.get(DEADLINE_MS, TimeUnit.MILLISECONDS)
  }

  /** A token for `user` from `chatwire token`. */
  fun token(user: String, ttl: String = "1h"): String {
    val pb = ProcessBuilder(chatwireBin.path, "token", "--user", user, "--ttl", ttl, "--data-dir", dataDir.path)
    pb.environment().putAll(serverEnv)
    pb.redirectError(ProcessBuilder.Redirect.INHERIT)
    val p = pb.start()
    val out = p.inputStream.bufferedReader().readText().trim()
    check(p.waitFor(DEADLINE_MS, TimeUnit.MILLISECONDS) && p.exitValue() == 0) { "chatwire token failed" }
    return out
  }

  /** A client config for `user` with fast backoff. */
  fun config(user: String, outboxStore: OutboxStore = InMemoryOutboxStore()): ClientConfig {
    val token = token(user)
    return ClientConfig(url = url, token = { token }, backoff = Backoff(50, 500), outboxStore = outboxStore)
  }

  /** A connected client for `user`. */
  suspend fun client(user: String): ChatwireClient = ChatwireClient.connect(config(user))

  /** SIGKILL: no drain, no goodbye. */
  fun kill() {
    val p = proc ?: return
    p.destroyForcibly() // SIGKILL on Linux
    p.waitFor()
  }

  /** SIGTERM: the server drains (Disconnect SERVER_DRAINING, reconnect true) and exits. */
  fun terminate() {
    val p = proc ?: return
    p.destroy() // SIGTERM on Linux
    check(p.waitFor(DEADLINE_MS, TimeUnit.MILLISECONDS)) { "server did not exit after SIGTERM" }
  }

  /** Starts again on the same address and data folder. */
  fun restart() = spawn(addr)

  fun stop() {
    proc?.let {
      if (it.isAlive) {
        it.destroy()
        if (!it.waitFor(DEADLINE_MS, TimeUnit.MILLISECONDS)) it.destroyForcibly()
      }
    }
    if (ownDir) dataDir.deleteRecursively()
  }
}

/** The first value of `flow` matching `predicate`, or a failure after the deadline. */
suspend fun <T> Flow<T>.firstWithin(what: String, predicate: (T) -> Boolean): T =
  try {
    withTimeout(DEADLINE_MS) { first(predicate) }
  } catch (e: kotlinx.coroutines.TimeoutCancellationException) {
    throw AssertionError("timed out waiting for $what")
  }

/** Runs `block` with a deadline (tests never hang past it). */
fun <T> within(block: suspend CoroutineScope.() -> T): T =
  kotlinx.coroutines.runBlocking { withTimeout(4 * DEADLINE_MS) { block() } }

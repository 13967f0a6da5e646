// Outgoing messages, their status (docs/protocol.md R-8.2.6, R-12.3.2) and the storage that
// keeps unacknowledged ones across app restarts.
package dev.chatwire.client

import chatwire.v1.SendRequest
import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Deferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import kotlinx.coroutines.withContext

/** Where one of the user's own messages stands; it only moves forward, or to [FAILED]. */
public enum class MessageStatus { PENDING, SENT, DELIVERED, READ, FAILED }

/** One message sent through the outbox. */
public class OutgoingMessage internal constructor(
  /** The request, sent unchanged (same client_msg_id) on every attempt. */
  public val request: SendRequest,
) {
  /** Its idempotency key. */
  public val clientMsgId: String get() = request.client_msg_id

  /** Its room. */
  public val roomId: String get() = request.room_id

  private val _status = MutableStateFlow(MessageStatus.PENDING)

  /** Its status as a flow: pending, sent, delivered, read, or failed. */
  public val status: StateFlow<MessageStatus> = _status.asStateFlow()

  /** Its seq once the server stored it. */
  @Volatile public var seq: Long? = null
    private set

  /** Why it failed, when it did. */
  @Volatile public var error: Throwable? = null
    private set

  /** Attempts made so far (this process). */
  @Volatile public var attempts: Int = 0
    internal set

  private val stored = CompletableDeferred<Long>()

  /** Completes with the seq once the message is stored; fails if the message fails. */
  public val sent: Deferred<Long> get() = stored

  /** Waits until the server stored it; returns its seq. */
  public suspend fun awaitSent(): Long = stored.await()

  internal fun advance(next: MessageStatus): Boolean {
    val now = _status.value
    if (now == MessageStatus.FAILED || next.ordinal <= now.ordinal) return false
    _status.value = next
    return true
  }

  internal fun acknowledge(seq: Long): Boolean {
    if (this.seq != null || _status.value == MessageStatus.FAILED) return false
    this.seq = seq
    advance(MessageStatus.SENT)
    stored.complete(seq)
    return true
  }

  /** This client gives up on it, but a persistent store keeps it for the next one. */
  internal fun abandon(cause: Throwable) {
    stored.completeExceptionally(cause)
  }

  internal fun fail(cause: Throwable): Boolean {
    if (_status.value != MessageStatus.PENDING) return false
    error = cause
    _status.value = MessageStatus.FAILED
    stored.completeExceptionally(cause)
    return true
  }

  override fun toString(): String = "OutgoingMessage($clientMsgId in $roomId: ${_status.value}${seq?.let { " seq $it" } ?: ""})"
}

/**
 * Where unacknowledged sends are kept until the server stores them. The client writes a send
 * here before `sendMessage` returns and removes it once acknowledged; on start it loads and
 * resends whatever is left, with the same client_msg_id.
 */
public interface OutboxStore {
  /** Every kept send, oldest first. */
  public suspend fun load(): List<SendRequest>

  /** Keeps a send (replacing one with the same client_msg_id). */
  public suspend fun put(request: SendRequest)

  /** Forgets a send. */
  public suspend fun remove(clientMsgId: String)
}

/** An outbox that lives as long as the process (the default). */
public class InMemoryOutboxStore : OutboxStore {
  private val mutex = Mutex()
  private val sends = LinkedHashMap<String, SendRequest>()

  override suspend fun load(): List<SendRequest> = mutex.withLock { sends.values.toList() }

  override suspend fun put(request: SendRequest): Unit = mutex.withLock { sends[request.client_msg_id] = request }

  override suspend fun remove(clientMsgId: String): Unit = mutex.withLock { sends.remove(clientMsgId); Unit }
}

/**
 * An outbox in a folder (for example `context.filesDir/chatwire-outbox` on Android): one file per
 * send, written to a temporary file, synced and renamed into place, so a crash leaves either the
 * whole send or none. File names keep the order of sending.
 */
public class FileOutboxStore(private val dir: File) : OutboxStore {
  private val mutex = Mutex()
  private var next = -1L
  private val names = HashMap<String, File>()

  override suspend fun load(): List<SendRequest> = mutex.withLock {
    withContext(Dispatchers.IO) {
      dir.mkdirs()
      val files = (dir.listFiles() ?: emptyArray()).filter { it.name.endsWith(SUFFIX) }.sortedBy { it.name }
      val out = ArrayList<SendRequest>()
      for (f in files) {
        val request = try {
          SendRequest.ADAPTER.decode(f.readBytes())
        } catch (e: IOException) {
          continue // a file that is not a send (never written by this class)
        }
        names[request.client_msg_id] = f
        out.add(request)
      }
      next = maxOf(next, (files.mapNotNull { it.name.substringBefore('-').toLongOrNull() }.maxOrNull() ?: 0L) + 1)
      out
    }
  }

  override suspend fun put(request: SendRequest): Unit = mutex.withLock {
    withContext(Dispatchers.IO) {
      dir.mkdirs()
      if (next < 0) {
        next = ((dir.listFiles() ?: emptyArray()).mapNotNull { it.name.substringBefore('-').toLongOrNull() }.maxOrNull() ?: 0L) + 1
      }
      val target = names[request.client_msg_id] ?: File(dir, "%020d-%s%s".format(next++, safe(request.client_msg_id), SUFFIX))
      val tmp = File(dir, "${target.name}.tmp")
      FileOutputStream(tmp).use { out ->
        out.write(SendRequest.ADAPTER.encode(request))
        out.fd.sync()
      }
      Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
      names[request.client_msg_id] = target
    }
  }

  override suspend fun remove(clientMsgId: String): Unit = mutex.withLock {
    withContext(Dispatchers.IO) {
      names.remove(clientMsgId)?.delete()
      Unit
    }
  }

  private companion object {
    const val SUFFIX = ".send"

    /** The id as a file-name part: ids are printable ASCII, of which `/` and a few others are not portable. */
    fun safe(id: String): String = id.map { c -> if (c.isLetterOrDigit() || c == '-' || c == '_') c else '_' }.joinToString("").take(64)
  }
}

/**
 * The status R-12.3.2 derives for a message at `seq`: delivered (read) when every other member's
 * delivered (read) watermark reached it. With no other member known it stays sent.
 */
internal fun statusFromReceipts(seq: Long, me: String, members: Set<String>, marks: Map<String, Watermarks>): MessageStatus {
  var others = 0
  var delivered = true
  var read = true
  for (user in members) {
    if (user == me) continue
    others++
    val mark = marks[user] ?: Watermarks(0, 0)
    if (mark.delivered < seq && mark.read < seq) delivered = false
    if (mark.read < seq) read = false
  }
  if (others == 0) return MessageStatus.SENT
  return if (read) MessageStatus.READ else if (delivered) MessageStatus.DELIVERED else MessageStatus.SENT
}

/** A member's watermarks in one room. */
public data class Watermarks(val delivered: Long, val read: Long)

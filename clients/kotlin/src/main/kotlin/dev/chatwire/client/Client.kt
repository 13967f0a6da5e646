// The runtime: one WebSocket session at a time, reconnect with backoff, resume, outbox, message
// status, request timeouts, token refresh, app lifecycle. The typed request methods come from
// the generated `ChatwireRequests`; this class implements its `call`.
//
// Concurrency: every piece of mutable state below is touched only on `loop`, a dispatcher with
// parallelism 1 (an event loop). OkHttp's threads hand frames to it through `inbox`; callers'
// coroutines enter it with `withContext(loop)`. Nothing blocks a caller's thread.
package dev.chatwire.client

import chatwire.v1.ClientFrame
import chatwire.v1.ClientInfo
import chatwire.v1.ConnectRequest
import chatwire.v1.ConnectResponse
import chatwire.v1.Content
import chatwire.v1.Disconnect
import chatwire.v1.Event
import chatwire.v1.GetReceiptsRequest
import chatwire.v1.ListMembersRequest
import chatwire.v1.PingRequest
import chatwire.v1.Receipt
import chatwire.v1.RefreshRequest
import chatwire.v1.RefreshResponse
import chatwire.v1.Reply
import chatwire.v1.RoomEvent
import chatwire.v1.SendRequest
import chatwire.v1.ServerFrame
import chatwire.v1.SubscribeRequest
import chatwire.v1.UnsubscribeRequest
import chatwire.v1.WatchPresenceRequest
import java.util.UUID
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.CoroutineExceptionHandler
import kotlinx.coroutines.CoroutineName
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Deferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.ExperimentalCoroutinesApi
import kotlinx.coroutines.Job
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableSharedFlow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.emitAll
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.takeWhile
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import okhttp3.OkHttpClient

/** Where the client's connection stands. */
public sealed class ConnectionState {
  /** Not connected on purpose: not opened yet, or paused in the background. */
  public object Idle : ConnectionState() {
    override fun toString(): String = "Idle"
  }

  /** The first connection is being made. */
  public object Connecting : ConnectionState() {
    override fun toString(): String = "Connecting"
  }

  /** A session is established. */
  public data class Connected(val session: ConnectResponse) : ConnectionState()

  /** The connection was lost (or never made); attempt `attempt` comes after a backoff delay. */
  public data class Reconnecting(val attempt: Int, val cause: String) : ConnectionState()

  /** The client is done: `close()`, a close code that forbids reconnecting, or attempts ran out. */
  public data class Closed(val reason: String, val code: Int?) : ConnectionState()
}

/** How to reach and authenticate to a server, and how to behave. */
public class ClientConfig(
  /** The WebSocket URL, `ws://host:port/v1/ws`. */
  public val url: String,
  /** Asked for a session token before every connection. */
  public val token: suspend () -> String,
  /** Asked for a new token when the server says the current one expires soon (default: [token]). */
  public val refreshToken: (suspend () -> String)? = null,
  /** Default request timeout in ms. */
  public val requestTimeoutMs: Long = 30_000,
  /** How long one connection attempt (TCP, TLS, WebSocket upgrade, Connect reply) may take, in ms. */
  public val connectTimeoutMs: Long = 15_000,
  /** Consecutive failed connection attempts before the client closes; unlimited by default. */
  public val maxAttempts: Int = Int.MAX_VALUE,
  /** Reconnect backoff (full jitter, 1 s doubling to 30 s). */
  public val backoff: Backoff = Backoff(),
  /** Reconnect automatically. */
  public val reconnect: Boolean = true,
  /** Where unacknowledged sends are kept ([FileOutboxStore] survives an app restart). */
  public val outboxStore: OutboxStore = InMemoryOutboxStore(),
  /** Sent in ConnectRequest.client, for the server's logs. */
  public val clientInfo: ClientInfo = ClientInfo(name = "chatwire-kotlin", version = "0.1.0", platform = defaultPlatform()),
  /** A stable id of this app install. */
  public val deviceId: String = "",
  /** Capabilities to offer. */
  public val capabilities: List<String> = emptyList(),
  /** How long [ChatwireClient.onBackground] keeps the connection before closing it, in ms. */
  public val backgroundGraceMs: Long = 10_000,
  /** An OkHttp client to share (its connect timeout is then yours to set); one is made otherwise. */
  public val okHttpClient: OkHttpClient? = null,
  /** Another transport (QUIC: `dev.chatwire.client.quic.QuicTransportFactory`); WebSocket by default. */
  public val transportFactory: TransportFactory? = null,
)

internal fun defaultPlatform(): String =
  if (System.getProperty("java.vendor", "").contains("Android", ignoreCase = true)) "android" else "jvm"

/** A failure no caller awaits (a background resume, a token refresh), as the client reports it. */
public class BackgroundError(public val what: String, public val cause: Throwable)

/** What a followed room looks like now. */
public data class RoomSnapshot(
  val roomId: String,
  /** The highest seq applied; resume subscribes after it. */
  val lastSeq: Long,
  /** True while the room is delivered live (not catching up). */
  val live: Boolean,
  val members: Set<String>,
  val receipts: Map<String, Watermarks>,
)

private object End

/**
 * A Chatwire client. `ChatwireClient.connect(config)` (or the constructor and [open]), then call
 * the typed request methods, follow rooms with [subscribeRoom], post with [sendMessage], and
 * collect [events], [state] and message statuses.
 */
public class ChatwireClient(private val config: ClientConfig) : ChatwireRequests() {
  @OptIn(ExperimentalCoroutinesApi::class)
  private val loop = Dispatchers.Default.limitedParallelism(1)
  private val job = SupervisorJob()
  private val scope = CoroutineScope(
    job + loop + CoroutineName("chatwire-client") +
      CoroutineExceptionHandler { _, e -> report("background task", e) },
  )
  private val ownsHttp = config.okHttpClient == null
  private val http: OkHttpClient = config.okHttpClient ?: OkHttpClient.Builder()
    .connectTimeout(config.connectTimeoutMs, TimeUnit.MILLISECONDS)
    .readTimeout(0, TimeUnit.MILLISECONDS)
    .build()

  private val _state = MutableStateFlow<ConnectionState>(ConnectionState.Idle)

  /** The connection state. */
  public val state: StateFlow<ConnectionState> = _state.asStateFlow()

  /** Everything the client emits, in order; ends with [End] when the client closes. */
  private val bus = MutableSharedFlow<Any>(extraBufferCapacity = Int.MAX_VALUE)

  @Volatile private var closed = false

  /** The bus until the client closes. */
  private fun untilClosed(): Flow<Any> = flow {
    if (!closed) emitAll(bus.takeWhile { it !== End })
  }

  /**
   * Every server event, as the sealed [ChatwireEvent] hierarchy: room events once each, in seq
   * order, for followed rooms (replayed pages and live ones alike). Completes when the client
   * closes. Hot: collect before doing what causes the events.
   */
  public val events: Flow<ChatwireEvent> = untilClosed().filterIsInstance<ChatwireEvent>()

  /** The room events of every room, unwrapped. */
  public val roomEvents: Flow<RoomEvent> = events.filterIsInstance<ChatwireEvent.Room>().map { it.value }

  /** Every status change of the user's own messages. */
  public val statusChanges: Flow<OutgoingMessage> = untilClosed().filterIsInstance<StatusChange>().map { it.message }

  /** Every established session (the first and each reconnect). */
  public val sessions: Flow<ConnectResponse> = untilClosed().filterIsInstance<ConnectResponse>()

  /** The replies of automatic token refreshes. */
  public val tokenRefreshes: Flow<RefreshResponse> = untilClosed().filterIsInstance<RefreshResponse>()

  /** Failures no caller awaits (a background resume, a token refresh). */
  public val errors: Flow<BackgroundError> = untilClosed().filterIsInstance<BackgroundError>()

  private class StatusChange(val message: OutgoingMessage)

  private class PendingCall(
    val id: Long,
    val kind: RequestKind,
    val frame: ClientFrame,
    val outbox: Boolean,
  ) {
    val reply = CompletableDeferred<Reply>()
    var timer: Job? = null
    var sentOn = -1
  }

  private class RoomState(val roomId: String, var lastSeq: Long) {
    var live = false
    val held = ArrayList<RoomEvent>()
    var catchingUp: Deferred<Unit>? = null
    val members = HashSet<String>()
    val receipts = HashMap<String, Watermarks>()

    fun mark(userId: String, delivered: Long, read: Long) {
      val old = receipts[userId] ?: Watermarks(0, 0)
      receipts[userId] = Watermarks(maxOf(delivered, old.delivered), maxOf(read, old.read))
    }
  }

  /** Why this side closed the current transport. */
  private enum class LocalClose { RECONNECT_NOW, PAUSE, FINISH }

  private sealed class Input {
    class Opened(val transport: ChatwireTransport) : Input()
    class Message(val transport: ChatwireTransport, val bytes: ByteArray) : Input()
    class Lost(val transport: ChatwireTransport, val code: Int, val reason: String) : Input()
  }

  private val inbox = Channel<Input>(Channel.UNLIMITED)
  private val transportEvents = object : TransportListener {
    override fun opened(transport: ChatwireTransport) {
      inbox.trySend(Input.Opened(transport))
    }

    override fun message(transport: ChatwireTransport, bytes: ByteArray) {
      inbox.trySend(Input.Message(transport, bytes))
    }

    override fun closed(transport: ChatwireTransport, code: Int, reason: String) {
      inbox.trySend(Input.Lost(transport, code, reason))
    }
  }

  // State, touched on `loop` only.
  private val outbox = LinkedHashMap<String, OutgoingMessage>()
  private val rooms = HashMap<String, RoomState>()
  private val watched = LinkedHashSet<String>()
  private val pending = HashMap<Long, PendingCall>()
  private val queue = ArrayDeque<PendingCall>()
  private var transport: ChatwireTransport? = null
  private var transportHadSession = false
  private var localClose: LocalClose? = null
  private var connectToken = ""
  private var generation = 0
  private var nextId = 1L
  private var attempt = 0
  private var failures = 0
  private var lastCause = ""
  private var disconnect: Disconnect? = null
  private var reconnectJob: Job? = null
  private var heartbeatJob: Job? = null
  private var stableJob: Job? = null
  private var connectTimeoutJob: Job? = null
  private var backgroundJob: Job? = null
  private var lastSent = 0L
  private var lastReceived = 0L
  private var hadSession = false
  private var started = false
  private var paused = false
  private val firstSession = CompletableDeferred<ConnectResponse>()

  /** The current session, while connected. */
  @Volatile public var session: ConnectResponse? = null
    private set

  /** The user id of the session (after the first connect). */
  @Volatile public var userId: String = ""
    private set

  init {
    scope.launch {
      for (input in inbox) {
        when (input) {
          is Input.Opened -> if (input.transport === transport) sendConnect(input.transport)
          is Input.Message -> receive(input.transport, input.bytes)
          is Input.Lost -> lost(input.transport, input.code, input.reason)
        }
      }
    }
  }

  public companion object {
    /** Creates a client and returns once its first session is established. */
    public suspend fun connect(config: ClientConfig): ChatwireClient {
      val client = ChatwireClient(config)
      try {
        client.open()
      } catch (e: Throwable) {
        client.close()
        throw e
      }
      return client
    }
  }

  /**
   * Loads the outbox from its store, opens the connection (retrying with backoff) and returns the
   * first session. Throws [SessionClosedException] when the client closes first.
   */
  public suspend fun open(): ConnectResponse {
    withContext(loop) {
      check(!started) { "open() was already called" }
      check(!closed) { "the client is closed" }
      started = true
    }
    val kept = config.outboxStore.load()
    withContext(loop) {
      for (request in kept) {
        if (!outbox.containsKey(request.client_msg_id)) outbox[request.client_msg_id] = OutgoingMessage(request)
      }
      if (!closed) startConnection()
    }
    return firstSession.await()
  }

  /**
   * Follows a room: replays its log after `afterSeq` (default: what this client already applied,
   * else 0) page by page as [ChatwireEvent.Room] events, then delivers it live; after every
   * reconnect it resumes from the last applied seq. Returns once the room is live.
   */
  public suspend fun subscribeRoom(roomId: String, afterSeq: Long? = null): RoomSnapshot {
    val room = withContext(loop) {
      val room = rooms.getOrPut(roomId) { RoomState(roomId, afterSeq ?: 0L) }
      if (afterSeq != null) room.lastSeq = afterSeq
      room.live = false
      room
    }
    while (true) {
      try {
        withContext(loop) { catchUp(room) }.await()
      } catch (e: NoReplyException) {
        // The connection dropped mid-way: the next session's resume picks the room up.
        if (e.reason != NoReplyException.Reason.CONNECTION_LOST) throw e
        nextSession()
        continue
      }
      try {
        withContext(loop) { loadReceipts(room) }
      } catch (e: NoReplyException) {
        if (e.reason != NoReplyException.Reason.CONNECTION_LOST) throw e
        nextSession()
        continue
      } catch (e: ChatwireException) {
        // Followed and live: a refused ListMembers or GetReceipts only leaves status without
        // members or watermarks.
        report("receipts of $roomId", e)
      }
      return withContext(loop) { snapshot(room) }
    }
  }

  /** Stops following a room. */
  public suspend fun unsubscribeRoom(roomId: String) {
    withContext(loop) { rooms.remove(roomId) }
    unsubscribe(UnsubscribeRequest(room_id = roomId))
  }

  /** The state of a followed room, or null. */
  public suspend fun room(roomId: String): RoomSnapshot? = withContext(loop) { rooms[roomId]?.let { snapshot(it) } }

  private fun snapshot(room: RoomState) =
    RoomSnapshot(room.roomId, room.lastSeq, room.live, room.members.toSet(), room.receipts.toMap())

  /**
   * Posts a message through the outbox: it is kept in the outbox store before this returns, sent
   * now when connected, else on the next session, and resent with the same client_msg_id until
   * the server stores it. Follow it with [OutgoingMessage.status].
   */
  public suspend fun sendMessage(
    roomId: String,
    content: Content,
    clientMsgId: String = UUID.randomUUID().toString(),
    replyToSeq: Long = 0,
    threadRootSeq: Long = 0,
  ): OutgoingMessage {
    if (closed) throw SessionClosedException(null, "client is closed")
    val request = SendRequest(
      room_id = roomId,
      client_msg_id = clientMsgId,
      content = content,
      reply_to_seq = replyToSeq,
      thread_root_seq = threadRootSeq,
    )
    config.outboxStore.put(request)
    return withContext(loop) {
      val message = outbox.getOrPut(clientMsgId) { OutgoingMessage(request) }
      emit(StatusChange(message))
      if (_state.value is ConnectionState.Connected) transmit(message)
      message
    }
  }

  /** Posts a text message through the outbox (see the other overload). */
  public suspend fun sendMessage(roomId: String, text: String): OutgoingMessage = sendMessage(roomId, Content(text = text))

  /** A message of the outbox by its client_msg_id. */
  public suspend fun outgoing(clientMsgId: String): OutgoingMessage? = withContext(loop) { outbox[clientMsgId] }

  /** Messages not yet acknowledged by the server, oldest first (those loaded from the store included). */
  public suspend fun unacknowledged(): List<OutgoingMessage> =
    withContext(loop) { outbox.values.filter { it.status.value == MessageStatus.PENDING } }

  /**
   * Says whether the user is typing in a room. Over QUIC with the `typing-datagrams` capability
   * (offer it in [ClientConfig.capabilities]) it goes as a datagram without a reply (R-2.5.6);
   * otherwise as a `Typing` request. Returns true when it went as a datagram.
   */
  public suspend fun sendTyping(roomId: String, active: Boolean): Boolean {
    val request = chatwire.v1.TypingRequest(room_id = roomId, active = active)
    val sent = withContext(loop) {
      val t = transport
      val granted = session?.capabilities?.contains(TYPING_DATAGRAMS) == true
      t != null && granted && t.sendDatagram(FrameCodec.encodeClientFrame(ClientFrame(id = 0, typing = request)))
    }
    if (!sent) typing(request)
    return sent
  }

  // -------------------------------------------------------------------------------------------
  // App lifecycle (Android: call from ProcessLifecycleOwner / ConnectivityManager callbacks)

  /** The app went to the background: the connection closes after `graceMs` unless [onForeground] comes first. */
  public fun onBackground(graceMs: Long = config.backgroundGraceMs) {
    scope.launch {
      backgroundJob?.cancel()
      backgroundJob = scope.launch {
        delay(graceMs)
        backgroundJob = null
        pause()
      }
    }
  }

  /** The app is in the foreground again: a paused or waiting connection is made at once. */
  public fun onForeground() {
    scope.launch {
      backgroundJob?.cancel()
      backgroundJob = null
      if (paused) {
        paused = false
        attempt = 0
        if (transport == null && started && !closed) startConnection()
      } else {
        reconnectNowIfWaiting()
      }
    }
  }

  /**
   * The network changed (or came back): a waiting reconnect happens now with backoff reset, and a
   * connection made over the previous network is replaced at once.
   */
  public fun onNetworkChanged() {
    scope.launch {
      attempt = 0
      if (paused || closed || !started) return@launch
      val t = transport
      if (t != null && _state.value is ConnectionState.Connected) {
        localClose = LocalClose.RECONNECT_NOW
        t.close(1000, "network changed")
      } else {
        reconnectNowIfWaiting()
      }
    }
  }

  private fun reconnectNowIfWaiting() {
    attempt = 0
    val waiting = reconnectJob ?: return
    waiting.cancel()
    reconnectJob = null
    startConnection()
  }

  private fun pause() {
    if (closed || paused) return
    paused = true
    reconnectJob?.cancel()
    reconnectJob = null
    val t = transport
    if (t != null) {
      localClose = LocalClose.PAUSE
      t.close(ChatwireCloseCode.CLIENT_CLOSED.number, "app in background")
    } else {
      generation++ // a connection being made (token provider running) is abandoned
      setState(ConnectionState.Idle)
    }
  }

  /**
   * Ends the client (close code 4012): pending requests fail with [NoReplyException], every
   * coroutine the client started is cancelled, and the flows complete. Unacknowledged sends stay
   * in a persistent outbox store for the next client. Returns at once; [closeAndJoin] waits.
   */
  public fun close() {
    CoroutineScope(loop).launch { closeNow() }
  }

  /** [close], then waits until everything the client started has stopped. */
  public suspend fun closeAndJoin() {
    withContext(loop) { closeNow() }
    job.join()
  }

  private fun closeNow() {
    if (closed) return
    val t = transport
    if (t != null) {
      localClose = LocalClose.FINISH
      t.close(ChatwireCloseCode.CLIENT_CLOSED.number, "client closed")
    }
    finish(SessionClosedException(ChatwireCloseCode.CLIENT_CLOSED.number, "client closed"))
  }

  override suspend fun call(kind: RequestKind, frame: ClientFrame, options: CallOptions): Reply {
    val call = withContext(loop) {
      enqueue(kind, frame.copy(trace_id = options.traceId), options.timeoutMs ?: config.requestTimeoutMs, outbox = false)
    }
    try {
      return call.reply.await()
    } catch (e: CancellationException) {
      if (!call.reply.isCompleted) scope.launch { forget(call) }
      throw e
    }
  }

  override fun unexpectedReply(kind: RequestKind, reply: Reply): Throwable = UnexpectedReplyException(kind)

  // -------------------------------------------------------------------------------------------
  // Connection life cycle

  private fun startConnection() {
    val gen = ++generation
    disconnect = null
    if (!hadSession) setState(ConnectionState.Connecting)
    connectTimeoutJob?.cancel()
    connectTimeoutJob = scope.launch {
      delay(config.connectTimeoutMs)
      if (gen != generation || _state.value is ConnectionState.Connected) return@launch
      val t = transport
      if (t != null) {
        t.close(ChatwireCloseCode.CONNECT_TIMEOUT.number, "no session after ${config.connectTimeoutMs} ms")
      } else {
        generation++
        connectFailed("connect timeout (token provider)")
      }
    }
    scope.launch(start = CoroutineStart.UNDISPATCHED) {
      val token = try {
        withTimeout(config.connectTimeoutMs) { config.token() }
      } catch (e: TimeoutCancellationException) {
        return@launch // the connect timeout above handles it
      } catch (e: CancellationException) {
        throw e
      } catch (e: Throwable) {
        if (gen != generation) return@launch
        report("token provider", e)
        connectTimeoutJob?.cancel()
        connectFailed("token provider failed: ${e.message}")
        return@launch
      }
      if (gen != generation || closed || paused) return@launch
      connectToken = token
      transportHadSession = false
      localClose = null
      transport = try {
        config.transportFactory?.open(config.url, transportEvents) ?: WebSocketTransport(http, config.url, transportEvents)
      } catch (e: Exception) {
        report("transport", e)
        connectTimeoutJob?.cancel()
        connectFailed("cannot open a transport: ${e.message}")
        null
      }
    }
  }

  /** An attempt ended without a session (it never had a transport, or lost it). */
  private fun connectFailed(cause: String) {
    failures++
    if (failures >= config.maxAttempts) {
      finish(SessionClosedException(null, "no session after $failures attempts; last: $cause"))
      return
    }
    scheduleReconnect(0, cause)
  }

  private fun sendConnect(t: ChatwireTransport) {
    val id = nextId++
    val frame = ClientFrame(
      id = id,
      connect = ConnectRequest(
        token = connectToken,
        client = config.clientInfo,
        capabilities = config.capabilities,
        device_id = config.deviceId,
      ),
    )
    val call = PendingCall(id, RequestKind.CONNECT, frame, outbox = false)
    call.sentOn = generation
    pending[id] = call
    write(frame)
    scope.launch(start = CoroutineStart.UNDISPATCHED) {
      val reply = try {
        call.reply.await()
      } catch (e: ChatwireException) {
        if (t !== transport) return@launch
        lastCause = e.message ?: "connect refused"
        // Refused for good unless the server says a retry may work.
        if (!e.retryable && disconnect == null) {
          disconnect = Disconnect(reason = lastCause, reconnect = false)
        }
        t.close(1000, "connect refused")
        return@launch
      } catch (e: NoReplyException) {
        return@launch
      }
      established(t, reply.connect ?: return@launch)
    }
  }

  private fun established(t: ChatwireTransport, response: ConnectResponse) {
    if (t !== transport) return
    connectTimeoutJob?.cancel()
    session = response
    userId = response.user_id
    hadSession = true
    transportHadSession = true
    failures = 0
    setState(ConnectionState.Connected(response))
    lastReceived = System.currentTimeMillis()
    val interval = response.heartbeat_interval_ms.toLong().takeIf { it > 0 } ?: 30_000L
    heartbeatJob = scope.launch {
      while (true) {
        delay(maxOf(250L, interval / 4))
        heartbeat(interval)
      }
    }
    // Backoff resets once a session has stayed up for one interval (R-4.9.1).
    stableJob = scope.launch {
      delay(interval)
      attempt = 0
    }
    emit(response)
    firstSession.complete(response)
    resume()
    pump()
  }

  /** Re-subscribes every followed room, re-watches presence, resends the outbox, in that order of sending. */
  private fun resume() {
    for (room in rooms.values.toList()) {
      room.live = false
      scope.launch(start = CoroutineStart.UNDISPATCHED) {
        try {
          catchUp(room).await()
          loadReceipts(room)
        } catch (e: NoReplyException) {
          if (e.reason != NoReplyException.Reason.CONNECTION_LOST) report("resume of ${room.roomId}", e)
        } catch (e: ChatwireException) {
          report("resume of ${room.roomId}", e)
        }
      }
    }
    if (watched.isNotEmpty()) {
      val users = watched.toList()
      scope.launch(start = CoroutineStart.UNDISPATCHED) {
        try {
          watchPresence(WatchPresenceRequest(user_ids = users))
        } catch (e: Exception) {
          report("presence watch", e)
        }
      }
    }
    for (message in outbox.values.toList()) transmit(message)
  }

  private fun heartbeat(interval: Long) {
    val now = System.currentTimeMillis()
    if (now - lastReceived >= 2 * interval) {
      transport?.close(ChatwireCloseCode.HEARTBEAT_TIMEOUT.number, "no frame for two intervals")
      return
    }
    if (now - lastSent >= interval) {
      scope.launch(start = CoroutineStart.UNDISPATCHED) {
        try {
          ping(PingRequest(client_time_ms = now))
        } catch (e: Exception) {
          // A lost ping shows as a heartbeat timeout.
        }
      }
    }
  }

  private fun lost(t: ChatwireTransport, code: Int, reason: String) {
    if (t !== transport) return
    transport = null
    session = null
    stopTimers()
    connectTimeoutJob?.cancel()
    val gen = generation
    for (call in pending.values.toList()) {
      if (call.sentOn != gen) continue
      pending.remove(call.id)
      call.timer?.cancel()
      call.reply.completeExceptionally(NoReplyException(call.kind, NoReplyException.Reason.CONNECTION_LOST))
    }
    // Queued outbox sends wait for resume(), which resends the whole outbox in order.
    val queuedOutbox = queue.filter { it.outbox }
    queue.removeAll { it.outbox }
    for (call in queuedOutbox) {
      call.timer?.cancel()
      call.reply.completeExceptionally(NoReplyException(call.kind, NoReplyException.Reason.CONNECTION_LOST))
    }
    for (room in rooms.values) {
      room.live = false
      room.held.clear() // the next session's replay brings them again
    }
    if (closed) return
    val why = localClose
    localClose = null
    val hadOne = transportHadSession
    if (why == LocalClose.PAUSE || paused) {
      setState(ConnectionState.Idle)
      return
    }
    if (why == LocalClose.RECONNECT_NOW) {
      attempt = 0
      startConnection()
      return
    }
    val told = disconnect
    val permanent = told?.let { !it.reconnect } ?: (code in NO_RECONNECT)
    val cause = told?.let { "${ChatwireCloseCode.of(it.code.value)?.name ?: it.code.value}: ${it.reason}" } ?: "closed $code${if (reason.isEmpty()) "" else ": $reason"}"
    if (permanent || !config.reconnect) {
      finish(SessionClosedException(told?.code?.value?.takeIf { it != 0 } ?: code, told?.reason ?: reason))
      return
    }
    if (hadOne) {
      scheduleReconnect(told?.reconnect_delay_ms?.toLong() ?: 0L, cause)
    } else {
      val floor = told?.reconnect_delay_ms?.toLong() ?: 0L
      failures++
      if (failures >= config.maxAttempts) {
        finish(SessionClosedException(code, "no session after $failures attempts; last: $cause"))
        return
      }
      scheduleReconnect(floor, cause)
    }
  }

  private fun scheduleReconnect(floorMs: Long, cause: String) {
    lastCause = cause
    val delayMs = config.backoff.delayMs(attempt, floorMs)
    attempt++
    setState(ConnectionState.Reconnecting(attempt, cause))
    reconnectJob?.cancel()
    reconnectJob = scope.launch {
      delay(delayMs)
      reconnectJob = null
      startConnection()
    }
  }

  private fun finish(error: SessionClosedException) {
    if (closed) return
    closed = true
    setState(ConnectionState.Closed(error.reason, error.closeCode))
    stopTimers()
    connectTimeoutJob?.cancel()
    reconnectJob?.cancel()
    backgroundJob?.cancel()
    transport = null
    firstSession.completeExceptionally(error)
    for (call in pending.values.toList() + queue.toList()) {
      call.timer?.cancel()
      call.reply.completeExceptionally(NoReplyException(call.kind, NoReplyException.Reason.CLOSED))
    }
    pending.clear()
    queue.clear()
    val persistent = config.outboxStore !is InMemoryOutboxStore
    for (message in outbox.values) {
      if (message.status.value != MessageStatus.PENDING) continue
      // A persistent store keeps it for the next client; otherwise it is lost: failed.
      if (persistent) message.abandon(error) else if (message.fail(error)) emit(StatusChange(message))
    }
    bus.tryEmit(End)
    inbox.close()
    if (ownsHttp) {
      http.dispatcher.executorService.shutdown()
      http.connectionPool.evictAll()
    }
    job.cancel()
  }

  private fun stopTimers() {
    heartbeatJob?.cancel()
    stableJob?.cancel()
    heartbeatJob = null
    stableJob = null
  }

  private fun setState(next: ConnectionState) {
    val now = _state.value
    if (now == next || now is ConnectionState.Closed) return
    _state.value = next
  }

  private fun emit(value: Any) {
    bus.tryEmit(value)
  }

  private fun report(what: String, e: Throwable) {
    bus.tryEmit(BackgroundError(what, e))
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  private fun enqueue(kind: RequestKind, frame: ClientFrame, timeoutMs: Long, outbox: Boolean): PendingCall {
    val id = nextId++
    val call = PendingCall(id, kind, frame.copy(id = id), outbox)
    if (closed) {
      call.reply.completeExceptionally(NoReplyException(kind, NoReplyException.Reason.CLOSED))
      return call
    }
    call.timer = scope.launch {
      delay(timeoutMs)
      expire(call)
    }
    queue.addLast(call)
    pump()
    return call
  }

  /** Sends queued requests while the session is up and the in-flight limit allows. */
  private fun pump() {
    val s = session ?: return
    if (_state.value !is ConnectionState.Connected) return
    val limit = s.limits?.max_in_flight_requests?.takeIf { it > 0 } ?: 64
    var inFlight = pending.values.count { it.sentOn == generation }
    while (queue.isNotEmpty() && inFlight < limit) {
      val call = queue.removeFirst()
      call.sentOn = generation
      pending[call.id] = call
      inFlight++
      write(call.frame)
    }
  }

  private fun write(frame: ClientFrame) {
    lastSent = System.currentTimeMillis()
    transport?.send(FrameCodec.encodeClientFrame(frame))
  }

  private fun expire(call: PendingCall) {
    val queued = queue.remove(call)
    if (pending.remove(call.id) == null && !queued) return
    call.reply.completeExceptionally(NoReplyException(call.kind, NoReplyException.Reason.TIMEOUT))
    pump()
  }

  private fun forget(call: PendingCall) {
    call.timer?.cancel()
    queue.remove(call)
    pending.remove(call.id)
    pump()
  }

  // -------------------------------------------------------------------------------------------
  // Incoming frames

  private fun receive(t: ChatwireTransport, bytes: ByteArray) {
    if (t !== transport) return
    lastReceived = System.currentTimeMillis()
    val frames: List<ServerFrame> = try {
      FrameCodec.decodeServerFrames(bytes)
    } catch (e: FrameDecodeException) {
      report("server frame", e)
      t.close(ChatwireCloseCode.PROTOCOL_VIOLATION.number, "undecodable server frame")
      return
    }
    for (frame in frames) {
      frame.reply?.let { reply(it) }
      frame.event?.let { event(it) }
    }
  }

  private fun reply(reply: Reply) {
    val call = pending.remove(reply.request_id) ?: return
    call.timer?.cancel()
    val error = reply.error
    if (error != null) {
      call.reply.completeExceptionally(ChatwireException(call.kind, error))
    } else {
      call.frame.watch_presence?.let { watched.addAll(it.user_ids) }
      call.frame.unwatch_presence?.let { watched.removeAll(it.user_ids.toSet()) }
      call.reply.complete(reply)
    }
    pump()
  }

  private fun event(event: Event) {
    val kind = ChatwireEvent.of(event) ?: return
    when (kind) {
      is ChatwireEvent.Room -> if (!liveRoomEvent(kind.value)) return
      is ChatwireEvent.Disconnect -> disconnect = kind.value
      is ChatwireEvent.TokenExpiring -> refreshSoon()
      is ChatwireEvent.ReceiptsChanged -> receiptsChanged(kind.value.room_id, kind.value.receipts)
      else -> {}
    }
    emit(kind)
  }

  /** Applies a live room event exactly once by seq; returns whether it is new. */
  private fun liveRoomEvent(event: RoomEvent): Boolean {
    val room = rooms[event.room_id] ?: return true
    if (event.seq <= room.lastSeq) return false
    if (!room.live) {
      // Catching up: held and applied in seq order once the replay reaches it (R-10.5.1).
      if (room.held.size < MAX_HELD) room.held.add(event)
      return false
    }
    if (event.seq > room.lastSeq + 1) {
      // A gap (R-10.5.4): replay from the last applied seq instead.
      room.live = false
      room.held.add(event)
      catchUp(room)
      return false
    }
    apply(room, event)
    return true
  }

  private fun apply(room: RoomState, event: RoomEvent) {
    room.lastSeq = event.seq
    event.member_joined?.let { room.members.add(it.user_id) }
    event.member_left?.let { room.members.remove(it.user_id) }
    val created = event.message_created
    if (created != null && event.sender == userId) {
      val message = outbox[created.client_msg_id]
      if (message != null && message.acknowledge(event.seq)) acknowledged(message, room)
    } else if (created != null && event.sender.isNotEmpty()) {
      // R-12.1.6: a Send moves its sender's read and delivered watermarks to its seq, so a
      // member who posted at this seq has read everything before it.
      room.mark(event.sender, event.seq, event.seq)
      for (message in outbox.values.toList()) {
        val s = message.status.value
        if (message.roomId != room.roomId || (s != MessageStatus.SENT && s != MessageStatus.DELIVERED)) continue
        val seq = message.seq ?: continue
        if (message.advance(statusFromReceipts(seq, userId, room.members, room.receipts))) emit(StatusChange(message))
      }
      outbox.values.removeAll { it.status.value == MessageStatus.READ }
    }
  }

  /** Pages Subscribe until the room is live; replayed events are delivered like live ones. */
  private fun catchUp(room: RoomState): Deferred<Unit> {
    room.catchingUp?.let { return it }
    val done = CompletableDeferred<Unit>()
    room.catchingUp = done
    scope.launch(start = CoroutineStart.UNDISPATCHED) {
      try {
        while (true) {
          val page = try {
            subscribe(SubscribeRequest(room_id = room.roomId, after_seq = room.lastSeq))
          } catch (e: ChatwireException) {
            if (e.field == "after_seq") {
              room.lastSeq = 0 // R-10.1.5: the local copy is ahead of the server; start over.
              continue
            }
            throw e
          }
          if (rooms[room.roomId] !== room) break
          for (event in page.events) {
            if (event.seq <= room.lastSeq) continue
            apply(room, event)
            emit(ChatwireEvent.Room(event))
          }
          // A held event past a gap pages again, as long as the pages still bring events.
          if (page.complete && releaseHeld(room, page.events.isEmpty())) {
            room.live = true
            break
          }
        }
        if (room.catchingUp === done) room.catchingUp = null
        done.complete(Unit)
      } catch (e: Throwable) {
        if (room.catchingUp === done) room.catchingUp = null
        done.completeExceptionally(e)
        if (e is CancellationException) throw e
      }
    }
    return done
  }

  private fun releaseHeld(room: RoomState, acceptGaps: Boolean): Boolean {
    room.held.sortBy { it.seq }
    while (room.held.isNotEmpty()) {
      val event = room.held[0]
      if (event.seq > room.lastSeq + 1 && !acceptGaps) return false
      room.held.removeAt(0)
      if (event.seq <= room.lastSeq) continue
      apply(room, event)
      emit(ChatwireEvent.Room(event))
    }
    return true
  }

  /** Members and watermarks of a room, every page of them, for message status. */
  private suspend fun loadReceipts(room: RoomState) {
    val members = LinkedHashSet<String>()
    var after = ""
    do {
      val page = listMembers(ListMembersRequest(room_id = room.roomId, after_user_id = after))
      page.members.forEach { members.add(it.user_id) }
      after = page.members.lastOrNull()?.user_id ?: break
    } while (page.has_more)
    room.members.clear()
    room.members.addAll(members)
    after = ""
    do {
      val page = getReceipts(GetReceiptsRequest(room_id = room.roomId, after_user_id = after))
      receiptsChanged(room.roomId, page.receipts)
      after = page.receipts.lastOrNull()?.user_id ?: break
    } while (page.has_more)
  }

  private fun receiptsChanged(roomId: String, receipts: List<Receipt>) {
    val room = rooms[roomId] ?: return
    for (r in receipts) room.mark(r.user_id, r.delivered_seq, r.read_seq)
    for (message in outbox.values.toList()) {
      if (message.roomId != roomId) continue
      val s = message.status.value
      if (s == MessageStatus.SENT || s == MessageStatus.DELIVERED) statusChanged(message, room)
    }
    outbox.values.removeAll { it.status.value == MessageStatus.READ || it.status.value == MessageStatus.FAILED }
  }

  private fun acknowledged(message: OutgoingMessage, room: RoomState?) {
    val store = config.outboxStore
    scope.launch {
      try {
        store.remove(message.clientMsgId)
      } catch (e: Exception) {
        report("outbox store", e)
      }
    }
    statusChanged(message, room)
  }

  private fun statusChanged(message: OutgoingMessage, room: RoomState?) {
    val seq = message.seq
    if (room != null && seq != null) message.advance(statusFromReceipts(seq, userId, room.members, room.receipts))
    // Without a followed room no receipt can move it further: forget it once acknowledged.
    if (room == null && message.status.value != MessageStatus.PENDING) outbox.remove(message.clientMsgId)
    emit(StatusChange(message))
  }

  private fun refreshSoon() {
    val source = config.refreshToken ?: config.token
    scope.launch(start = CoroutineStart.UNDISPATCHED) {
      try {
        val token = source()
        val response = refresh(RefreshRequest(token = token))
        emit(response)
      } catch (e: CancellationException) {
        throw e
      } catch (e: Exception) {
        report("token refresh", e)
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Outbox

  private fun transmit(message: OutgoingMessage) {
    if (message.status.value != MessageStatus.PENDING) return
    message.attempts++
    val attempts = message.attempts
    val call = enqueue(RequestKind.SEND, ClientFrame(send = message.request), config.requestTimeoutMs, outbox = true)
    scope.launch(start = CoroutineStart.UNDISPATCHED) {
      try {
        val reply = call.reply.await()
        val seq = reply.send?.seq ?: throw UnexpectedReplyException(RequestKind.SEND)
        if (message.acknowledge(seq)) acknowledged(message, rooms[message.roomId])
      } catch (e: CancellationException) {
        throw e
      } catch (e: Exception) {
        sendFailed(message, e, attempts)
      }
    }
  }

  private suspend fun sendFailed(message: OutgoingMessage, e: Exception, attempts: Int) {
    if (message.status.value != MessageStatus.PENDING) return
    if (e is ChatwireException && !e.retryable) {
      if (message.fail(e)) {
        emit(StatusChange(message))
        try {
          config.outboxStore.remove(message.clientMsgId)
        } catch (x: Exception) {
          report("outbox store", x)
        }
      }
      return
    }
    // Resent by resume() after a lost connection; nothing to do after close.
    if (e is NoReplyException && e.reason != NoReplyException.Reason.TIMEOUT) return
    delay(if (e is ChatwireException) e.retryAfterMs else 0L)
    // Skipped when a resume has sent it again meanwhile.
    if (_state.value is ConnectionState.Connected && message.attempts == attempts) transmit(message)
  }

  private suspend fun nextSession() {
    val s = state.first { it is ConnectionState.Connected || it is ConnectionState.Closed }
    if (s is ConnectionState.Closed) throw SessionClosedException(s.code, s.reason)
  }

}

/** The capability that lets typing travel as QUIC datagrams (section 22). */
public const val TYPING_DATAGRAMS: String = "typing-datagrams"

/** Live events held per room while it catches up; more are dropped and repaired as a gap. */
private const val MAX_HELD = 10_000

/** Close codes after which the client does not reconnect. */
private val NO_RECONNECT = setOf(
  ChatwireCloseCode.AUTH_FAILED.number,
  ChatwireCloseCode.REVOKED.number,
  ChatwireCloseCode.CLIENT_CLOSED.number,
)

// The runtime: one WebSocket session at a time, reconnect with backoff, resume, outbox,
// message status, request timeouts, token refresh. The typed request methods come from the
// generated `ChatwireRequests`; this class implements its `call`.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, type ClientFrame, type Reply, type ServerFrame } from "./gen/chatwire/v1/frames_pb.js";
import type { ConnectResponse, RefreshResponse } from "./gen/chatwire/v1/session_pb.js";
import { CloseCode, type Error as ErrorMessage } from "./gen/chatwire/v1/errors_pb.js";
import { ContentSchema, SendRequestSchema, type Content } from "./gen/chatwire/v1/messages_pb.js";
import type { Disconnect, Event, RoomEvent } from "./gen/chatwire/v1/events_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ChatwireRequests, EVENTS_KINDS, type CallOptions, type Events, type RequestKind, type Requests } from "./generated/api.js";
import { ChatwireError, ConnectionError, NoReplyError, SessionClosedError } from "./errors.js";
import { decodeServerFrames, encodeClientFrame } from "./codec.js";
import { Transport, type TransportClose, type WebSocketConstructor } from "./transport.js";
import { MemoryOutboxStore, type OutboxStore } from "./store.js";
import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { Emitter, type Unsubscribe } from "./emitter.js";
import { OutgoingMessage, Outbox, statusFromReceipts } from "./outbox.js";
import { RoomState } from "./rooms.js";

/** Where the client's connection stands (the short form of {@link ConnectionStatus}). */
export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

/**
 * Where the client's connection stands, with what a UI shows about it: the observable value
 * behind `client.connection`, the `connection` event and `client.watchConnection(listener)`.
 */
export type ConnectionStatus =
  | { state: "idle" }
  /** The first connection attempt (`attempt` 1) is under way. */
  | { state: "connecting"; attempt: number }
  | { state: "connected"; session: ConnectResponse }
  /**
   * Waiting for, or making, attempt `attempt` (1-based, counted since the last session);
   * `lastError` is why the connection or the previous attempt failed.
   */
  | { state: "reconnecting"; attempt: number; lastError: Error | undefined }
  /** Final: `reason` says why; `code` is the close code when there was one. */
  | { state: "closed"; reason: string; code: number | undefined; error: Error };

/** HTTP answers to the upgrade that no retry can change (where the runtime exposes them). */
const FINAL_HTTP = new Set([401, 403, 404]);

/** How to reach and authenticate to a server. */
export interface ClientOptions {
  /** The WebSocket URL, `ws://host:port/v1/ws`. */
  url: string;
  /** The session token, or a function asked for one before every connection. */
  token: string | (() => string | Promise<string>);
  /** Asked for a new token when the server says the current one expires soon (default: `token` when it is a function). */
  refreshToken?: () => string | Promise<string>;
  /** The WebSocket constructor: `ws` in Node; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Default request timeout in ms (30000). */
  requestTimeoutMs?: number;
  /** Reconnect backoff (full jitter, 1 s doubling to 30 s). */
  backoff?: BackoffOptions;
  /** Reconnect automatically (default true). */
  reconnect?: boolean;
  /**
   * How long one connection attempt may take, from opening the WebSocket to the
   * `ConnectResponse`, in ms (default 15000); a slower attempt fails and is retried.
   */
  connectTimeoutMs?: number;
  /**
   * Consecutive failed connection attempts after which the client gives up and closes
   * (`connect()` rejects with the last {@link ConnectionError}). Default: 5 before the first
   * session, unlimited once a session was established (an outage never drops the outbox).
   * Set it to apply the same bound to both; `Infinity` never gives up.
   */
  maxAttempts?: number;
  /**
   * Where unsent messages are kept between runs (default: memory only). `IndexedDbOutboxStore`
   * in browsers, `FileOutboxStore` from `@chatwire/client/node` in Node: a message sent
   * offline survives a reload and is resent with the same client_msg_id.
   */
  outboxStore?: OutboxStore;
  /** Sent in ConnectRequest.client, for the server's logs. */
  clientInfo?: { name?: string; version?: string; platform?: string };
  /** A stable id of this app install. */
  deviceId?: string;
  /** Capabilities to offer. */
  capabilities?: string[];
}

/** Everything the client emits: the server's events by case, plus its own. */
export interface ClientEvents extends Events {
  /** Every server event (room events after seq de-duplication), as a oneof value. */
  event: ChatwireEvent;
  /** The connection state changed (short form). */
  state: ConnectionState;
  /** The connection status changed (every attempt, with its error). */
  connection: ConnectionStatus;
  /** A session was established (first connect or reconnect). */
  session: ConnectResponse;
  /** One of the user's own messages changed status. */
  status: OutgoingMessage;
  /** The session's token was replaced after a `TokenExpiring` event. */
  tokenRefreshed: RefreshResponse;
  /**
   * Something failed that no caller awaits: a connection attempt (a {@link ConnectionError},
   * one per failed attempt), a background resume, a token refresh, the outbox store.
   */
  error: Error;
}

/** One server event: `{ case, value }` as protobuf-es types `Event.kind`. */
export type ChatwireEvent = Exclude<Event["kind"], { case: undefined }>;

interface PendingCall {
  id: bigint;
  kind: RequestKind;
  frame: ClientFrame;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout> | undefined;
  sentOn: number | undefined;
  /** A transmission of an outbox message: never carried over to the next connection. */
  outbox: boolean;
}

/** Live events held per room while it catches up; more are dropped and repaired as a gap. */
const MAX_HELD = 10000;

const NO_RECONNECT = new Set<number>([CloseCode.AUTH_FAILED, CloseCode.REVOKED, CloseCode.CLIENT_CLOSED]);

/**
 * A Chatwire client. `await ChatwireClient.connect(options)`, then call the typed request
 * methods, follow rooms with `subscribeRoom`, post with `sendMessage`, and listen with `on` or
 * `events()`.
 */
export class ChatwireClient extends ChatwireRequests {
  private readonly options: ClientOptions;
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly outbox = new Outbox();
  private readonly rooms = new Map<string, RoomState>();
  private readonly watched = new Set<string>();
  private readonly pending = new Map<bigint, PendingCall>();
  private queue: PendingCall[] = [];
  private transport: Transport | null = null;
  private generation = 0;
  private nextId = 1n;
  private attempt = 0;
  private disconnect: Disconnect | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private stableTimer: ReturnType<typeof setTimeout> | undefined;
  private lastSent = 0;
  private transmitting = false;
  private hadSession = false;
  private lastReceived = 0;
  private firstSession: { resolve(r: ConnectResponse): void; reject(e: Error): void } | null = null;
  /** Failed attempts since the last established session. */
  private failedAttempts = 0;
  /** The transport that reached a session, while it lives. */
  private sessionTransport: Transport | null = null;
  /** The server's answer to the current attempt's Connect, when it refused. */
  private refusal: ChatwireError | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly store: OutboxStore;
  /** Outbox store writes, one after the other. */
  private storeChain: Promise<void> = Promise.resolve();
  private readonly onOnline = () => this.networkReturned();
  /** The current session, while connected. */
  session: ConnectResponse | undefined;
  /** The connection state (short form). */
  state: ConnectionState = "idle";
  /** The connection status (see {@link ConnectionStatus}). */
  connection: ConnectionStatus = { state: "idle" };

  constructor(options: ClientOptions) {
    super();
    this.options = options;
    this.store = options.outboxStore ?? new MemoryOutboxStore();
  }

  /**
   * Calls `listener` with the current connection status now and with every change until the
   * returned function is called (an observable value).
   */
  watchConnection(listener: (status: ConnectionStatus) => void): Unsubscribe {
    const off = this.emitter.on("connection", listener);
    listener(this.connection);
    return off;
  }

  /** Creates a client and resolves once its first session is established. */
  static async connect(options: ClientOptions): Promise<ChatwireClient> {
    const client = new ChatwireClient(options);
    await client.open();
    return client;
  }

  /**
   * Loads the outbox store's unsent messages (each reported as a `pending` status event), then
   * opens the connection (retrying with backoff) and resolves with the first session; rejects
   * with a {@link ConnectionError} when the client gives up.
   */
  open(): Promise<ConnectResponse> {
    if (this.state !== "idle") return Promise.reject(new Error("open() was already called"));
    const first = new Promise<ConnectResponse>((resolve, reject) => (this.firstSession = { resolve, reject }));
    (globalThis as { addEventListener?: (t: string, f: () => void) => void }).addEventListener?.("online", this.onOnline);
    this.setStatus({ state: "connecting", attempt: 1 });
    void this.restoreOutbox().then(() => this.startConnection());
    return first;
  }

  /** Puts the stored unsent messages back in the outbox, oldest first. */
  private async restoreOutbox(): Promise<void> {
    let stored;
    try {
      stored = await this.store.load();
    } catch (err) {
      this.emitter.emit("error", err as Error);
      return;
    }
    stored = [...stored].sort((a, b) => a.createdAtMs - b.createdAtMs);
    for (const record of stored) {
      if (this.outbox.get(record.clientMsgId)) continue;
      let request;
      try {
        request = fromBinary(SendRequestSchema, record.request);
      } catch (err) {
        this.emitter.emit("error", err as Error);
        this.persist(() => this.store.delete(record.clientMsgId));
        continue;
      }
      const message = new OutgoingMessage(request, record.createdAtMs);
      this.outbox.add(message);
      this.emitter.emit("status", message);
    }
  }

  /** Queues one outbox store operation; failures become `error` events. */
  private persist(op: () => Promise<void> | void): void {
    this.storeChain = this.storeChain.then(op).catch((err) => this.emitter.emit("error", err as Error));
  }

  /** Resolves once every outbox store write made so far has finished. */
  flushOutbox(): Promise<void> {
    return this.storeChain;
  }

  /** The message left the outbox for good: stored by the server, or failed. */
  private settled(message: OutgoingMessage): void {
    this.persist(() => this.store.delete(message.clientMsgId));
  }

  /** The user id of the session (after the first connect). */
  get userId(): string {
    return this.session?.userId ?? "";
  }

  /** Listens to one kind of event; returns the function that stops it. */
  on<K extends keyof ClientEvents>(kind: K, listener: (value: ClientEvents[K]) => void): Unsubscribe {
    return this.emitter.on(kind, listener);
  }

  /** Every server event as an async iterator (`for await (const e of client.events())`). */
  events(): AsyncIterableIterator<ChatwireEvent> {
    return this.emitter.iterate("event");
  }

  /** One kind of event as an async iterator. */
  iterate<K extends keyof ClientEvents>(kind: K): AsyncIterableIterator<ClientEvents[K]> {
    return this.emitter.iterate(kind);
  }

  /**
   * Follows a room: replays its log after `afterSeq` (default: what this client already
   * applied, else 0) page by page as `room` events, then delivers it live; after every
   * reconnect it resumes from the last applied seq. Resolves once the room is live.
   */
  async subscribeRoom(roomId: string, options: { afterSeq?: bigint } = {}): Promise<RoomState> {
    let room = this.rooms.get(roomId);
    if (!room) {
      room = new RoomState(roomId, options.afterSeq ?? 0n);
      this.rooms.set(roomId, room);
    } else if (options.afterSeq !== undefined) {
      room.lastSeq = options.afterSeq;
    }
    room.live = false;
    for (;;) {
      try {
        await this.catchUp(room);
      } catch (err) {
        // The connection dropped mid-way: the next session's resume picks the room up.
        if (!(err instanceof NoReplyError && err.reason === "connection-lost")) throw err;
        await this.nextSession();
        continue;
      }
      try {
        await this.loadReceipts(room);
      } catch (err) {
        if (err instanceof NoReplyError && err.reason === "connection-lost") {
          await this.nextSession();
          continue;
        }
        // The room is followed and live: a server that refuses ListMembers or GetReceipts only
        // leaves message status without members or watermarks, as resume() does.
        this.emitter.emit("error", err as Error);
      }
      return room;
    }
  }

  /** Resolves at the next established session; rejects if the client closes first. */
  private nextSession(): Promise<void> {
    return new Promise((resolve, reject) => {
      const offSession = this.emitter.once("session", () => {
        offState();
        resolve();
      });
      const offState = this.emitter.on("state", (state) => {
        if (state !== "closed") return;
        offSession();
        offState();
        reject(new SessionClosedError(undefined, "client closed"));
      });
    });
  }

  /** Stops following a room. */
  async unsubscribeRoom(roomId: string): Promise<void> {
    this.rooms.delete(roomId);
    await this.unsubscribe({ roomId });
  }

  /** The state of a followed room. */
  room(roomId: string): RoomState | undefined {
    return this.rooms.get(roomId);
  }

  /**
   * Posts a message through the outbox: it is sent now when connected, else on the next
   * session, and resent with the same client_msg_id until the server stores it.
   */
  sendMessage(roomId: string, content: string | MessageInitShape<typeof ContentSchema>, extra: { clientMsgId?: string; replyToSeq?: bigint; threadRootSeq?: bigint } = {}): OutgoingMessage {
    const body: Content = create(ContentSchema, typeof content === "string" ? { text: content } : content);
    const request = create(SendRequestSchema, {
      roomId,
      clientMsgId: extra.clientMsgId ?? newClientMsgId(),
      content: body,
      replyToSeq: extra.replyToSeq ?? 0n,
      threadRootSeq: extra.threadRootSeq ?? 0n,
    });
    const message = new OutgoingMessage(request, Date.now());
    this.outbox.add(message);
    this.persist(() => this.store.put({ clientMsgId: message.clientMsgId, roomId, request: toBinary(SendRequestSchema, request), createdAtMs: message.createdAtMs }));
    this.emitter.emit("status", message);
    if (this.state === "connected") this.transmit(message);
    return message;
  }

  /** A message of the outbox by its client_msg_id. */
  outgoing(clientMsgId: string): OutgoingMessage | undefined {
    return this.outbox.get(clientMsgId);
  }

  /** Messages not yet acknowledged by the server. */
  unacknowledged(): OutgoingMessage[] {
    return this.outbox.unacknowledged();
  }

  /** Tells the client the network is back: a waiting reconnect happens now, with backoff reset. */
  networkReturned(): void {
    this.attempt = 0;
    this.failedAttempts = 0;
    if (this.state === "reconnecting" && this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.startConnection();
    }
  }

  /**
   * Ends the session on purpose (close code 4012): pending requests fail, and so do unsent
   * messages for this client; an outbox store keeps them for the next client on it.
   */
  close(): void {
    if (this.state === "closed") return;
    this.transport?.close(CloseCode.CLIENT_CLOSED, "client closed");
    this.finish(new SessionClosedError(CloseCode.CLIENT_CLOSED, "client closed"));
  }

  protected call<K extends RequestKind>(kind: K, request: Requests[K]["request"], options: CallOptions = {}): Promise<Requests[K]["response"]> {
    if (this.state === "closed") return Promise.reject(new SessionClosedError(undefined, "client is closed"));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const frame = create(ClientFrameSchema, { id, traceId: options.traceId ?? "", request: { case: kind, value: request } as ClientFrame["request"] });
      const call: PendingCall = { id, kind, frame, resolve: resolve as (v: unknown) => void, reject, timer: undefined, sentOn: undefined, outbox: this.transmitting };
      const timeout = options.timeoutMs ?? this.options.requestTimeoutMs ?? 30000;
      call.timer = setTimeout(() => this.expire(call), timeout);
      this.queue.push(call);
      this.pump();
    }).then((response) => {
      this.afterReply(kind, request);
      return response as Requests[K]["response"];
    });
  }

  // ---------------------------------------------------------------------------------------
  // Connection life cycle

  private async startConnection(): Promise<void> {
    if (this.state === "closed") return;
    const generation = ++this.generation;
    const attempt = this.failedAttempts + 1;
    if (this.hadSession || this.failedAttempts > 0) {
      const lastError = this.connection.state === "reconnecting" ? this.connection.lastError : undefined;
      this.setStatus({ state: "reconnecting", attempt, lastError });
    } else {
      this.setStatus({ state: "connecting", attempt });
    }
    this.disconnect = undefined;
    this.refusal = undefined;
    let token: string;
    try {
      token = typeof this.options.token === "string" ? this.options.token : await this.options.token();
    } catch (err) {
      if (generation !== this.generation || (this.state as ConnectionState) === "closed") return;
      this.attemptFailed(new ConnectionError({ failure: "token", attempt, message: `token(): ${(err as Error)?.message ?? err}`, cause: err }), false);
      return;
    }
    if (generation !== this.generation || (this.state as ConnectionState) === "closed") return;
    const ctor = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!ctor) {
      this.finish(new Error("no WebSocket: pass options.WebSocket (the `ws` package in Node)"));
      return;
    }
    let transport: Transport;
    try {
      transport = new Transport(this.options.url, ctor, {
        open: () => this.sendConnect(transport, token),
        message: (bytes) => this.receive(transport, bytes),
        close: (info) => this.lost(transport, info),
      });
    } catch (err) {
      // A malformed URL: no retry can fix it.
      this.attemptFailed(new ConnectionError({ failure: "network", attempt, message: String((err as Error)?.message ?? err), cause: err }), true);
      return;
    }
    this.transport = transport;
    const timeout = this.options.connectTimeoutMs ?? 15000;
    this.connectTimer = setTimeout(() => {
      if (this.transport === transport && this.sessionTransport !== transport) {
        this.timedOut = transport;
        transport.abandon(`no session within ${timeout} ms`);
      }
    }, timeout);
    unref(this.connectTimer);
  }

  /** The transport whose attempt ran out of time. */
  private timedOut: Transport | null = null;

  /** One attempt failed: reports it, then retries or gives up. */
  private attemptFailed(error: ConnectionError, final: boolean, floorMs = 0): void {
    this.failedAttempts++;
    this.emitter.emit("error", error);
    const max = this.options.maxAttempts ?? (this.hadSession ? Infinity : 5);
    if (final || this.failedAttempts >= max || this.options.reconnect === false) {
      this.finish(error);
      return;
    }
    this.scheduleReconnect(floorMs, error);
  }

  private sendConnect(transport: Transport, token: string): void {
    if (transport !== this.transport) return;
    const id = this.nextId++;
    const info = this.options.clientInfo ?? {};
    const frame = create(ClientFrameSchema, {
      id,
      request: {
        case: "connect",
        value: {
          token,
          client: { name: info.name ?? "@chatwire/client", version: info.version ?? "0.1.0", platform: info.platform ?? "web" },
          capabilities: this.options.capabilities ?? [],
          deviceId: this.options.deviceId ?? "",
        },
      },
    });
    const call: PendingCall = {
      id,
      kind: "connect",
      frame,
      resolve: (r) => this.established(transport, r as ConnectResponse),
      reject: (err) => {
        // A refusal ends this attempt; the server's Disconnect and close say whether to retry.
        if (err instanceof ChatwireError) this.refusal = err;
        else if (err instanceof NoReplyError && err.reason === "timeout") this.timedOut = transport;
        transport.close(CloseCode.CLIENT_CLOSED, "connect refused");
      },
      timer: undefined,
      sentOn: this.generation,
      outbox: false,
    };
    call.timer = setTimeout(() => this.expire(call), this.options.connectTimeoutMs ?? 15000);
    this.pending.set(id, call);
    this.write(frame);
  }

  private established(transport: Transport, response: ConnectResponse): void {
    if (transport !== this.transport) return;
    clearTimeout(this.connectTimer);
    this.session = response;
    this.hadSession = true;
    this.sessionTransport = transport;
    this.failedAttempts = 0;
    this.setStatus({ state: "connected", session: response });
    this.lastReceived = Date.now();
    const interval = response.heartbeatIntervalMs || 30000;
    this.heartbeatTimer = setInterval(() => this.heartbeat(interval), Math.max(250, interval / 4));
    unref(this.heartbeatTimer);
    // Backoff resets once a session has stayed up for one interval.
    this.stableTimer = setTimeout(() => (this.attempt = 0), interval);
    unref(this.stableTimer);
    this.emitter.emit("session", response);
    this.firstSession?.resolve(response);
    this.firstSession = null;
    this.resume();
    this.pump();
  }

  /** Re-subscribes every followed room, re-watches presence, resends the outbox, in that order of sending. */
  private resume(): void {
    for (const room of this.rooms.values()) {
      room.live = false;
      this.catchUp(room)
        .then(() => this.loadReceipts(room))
        .catch((err) => this.emitter.emit("error", err));
    }
    if (this.watched.size > 0) {
      this.watchPresence({ userIds: [...this.watched] }).catch((err) => this.emitter.emit("error", err));
    }
    for (const message of this.outbox.unacknowledged()) this.transmit(message);
  }

  private heartbeat(interval: number): void {
    const now = Date.now();
    if (now - this.lastReceived >= 2 * interval) {
      this.transport?.close(CloseCode.HEARTBEAT_TIMEOUT, "no frame for two intervals");
      return;
    }
    if (now - this.lastSent >= interval) {
      this.ping({ clientTimeMs: BigInt(now) }).catch(() => {});
    }
  }

  private lost(transport: Transport, info: TransportClose): void {
    if (transport !== this.transport) return;
    const { code, reason } = info;
    const hadSession = this.sessionTransport === transport;
    this.sessionTransport = null;
    clearTimeout(this.connectTimer);
    this.transport = null;
    this.session = undefined;
    this.stopTimers();
    const generation = this.generation;
    for (const call of [...this.pending.values()]) {
      if (call.sentOn !== generation) continue;
      this.pending.delete(call.id);
      clearTimeout(call.timer);
      call.reject(new NoReplyError(call.kind, "connection-lost"));
    }
    // Queued outbox sends wait for resume(), which resends the whole outbox in order.
    for (const call of this.queue.filter((c) => c.outbox)) {
      clearTimeout(call.timer);
      call.reject(new NoReplyError(call.kind, "connection-lost"));
    }
    this.queue = this.queue.filter((c) => !c.outbox);
    for (const room of this.rooms.values()) {
      room.live = false;
      room.held.length = 0; // the next session's replay brings them again
    }
    if (this.state === "closed") return;
    const told = this.disconnect;
    if (!hadSession) {
      const attempt = this.failedAttempts + 1;
      const closeCode = told?.code ?? (code === CloseCode.CLIENT_CLOSED && this.refusal ? undefined : code);
      const timedOut = this.timedOut === transport;
      this.timedOut = null;
      const failure = this.refusal ? "refused" : timedOut ? "timeout" : info.httpStatus ? "http" : info.opened ? "closed" : "network";
      const detail = this.refusal?.message ?? told?.reason ?? (info.httpStatus ? `HTTP ${info.httpStatus} to the WebSocket upgrade` : reason || `closed with code ${code}`);
      const error = new ConnectionError({ failure, attempt, message: detail, closeCode, httpStatus: info.httpStatus, refusal: this.refusal });
      // An expired token is worth another attempt when the app can be asked for a new one.
      const renewable = closeCode === CloseCode.AUTH_EXPIRED && typeof this.options.token === "function";
      const final =
        !renewable &&
        ((told !== undefined && !told.reconnect) ||
        (this.refusal !== undefined && !this.refusal.retryable) ||
          (info.httpStatus !== undefined && FINAL_HTTP.has(info.httpStatus)));
      this.attemptFailed(error, final, told?.reconnectDelayMs ?? 0);
      return;
    }
    const permanent = told ? !told.reconnect : NO_RECONNECT.has(code);
    const error = new SessionClosedError(told?.code ?? code, told?.reason || reason);
    if (permanent || this.options.reconnect === false) {
      this.finish(error);
      return;
    }
    this.scheduleReconnect(told?.reconnectDelayMs ?? 0, error);
  }

  private scheduleReconnect(floorMs: number, lastError: Error | undefined): void {
    this.setStatus({ state: "reconnecting", attempt: this.failedAttempts + 1, lastError });
    const delay = backoffDelay(this.attempt++, this.options.backoff, floorMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.startConnection();
    }, delay);
  }

  private finish(error: Error): void {
    const code = error instanceof SessionClosedError ? error.code : error instanceof ConnectionError ? error.closeCode : undefined;
    this.setStatus({ state: "closed", reason: error.message, code, error });
    clearTimeout(this.connectTimer);
    this.stopTimers();
    clearTimeout(this.reconnectTimer);
    (globalThis as { removeEventListener?: (t: string, f: () => void) => void }).removeEventListener?.("online", this.onOnline);
    this.transport = null;
    this.firstSession?.reject(error);
    this.firstSession = null;
    for (const call of [...this.pending.values(), ...this.queue]) {
      clearTimeout(call.timer);
      call.reject(new NoReplyError(call.kind, "closed"));
    }
    this.pending.clear();
    this.queue = [];
    // Unsent messages fail for this client but stay in the outbox store: the next client opened
    // on the same store sends them (nothing the user sent is dropped by a close or a give-up).
    for (const message of this.outbox.unacknowledged()) {
      if (message.fail(error)) this.emitter.emit("status", message);
    }
    this.emitter.end();
  }

  private stopTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.stableTimer);
  }

  private setStatus(status: ConnectionStatus): void {
    if (this.state === "closed") return;
    const changed = this.state !== status.state;
    this.connection = status;
    this.state = status.state;
    if (changed) this.emitter.emit("state", status.state);
    this.emitter.emit("connection", status);
  }

  // ---------------------------------------------------------------------------------------
  // Requests

  /** Sends queued requests while the session is up and the in-flight limit allows. */
  private pump(): void {
    if (this.state !== "connected" || !this.session) return;
    const limit = this.session.limits?.maxInFlightRequests || 64;
    while (this.queue.length > 0 && this.inFlight() < limit) {
      const call = this.queue.shift()!;
      call.sentOn = this.generation;
      this.pending.set(call.id, call);
      this.write(call.frame);
    }
  }

  private inFlight(): number {
    let n = 0;
    for (const call of this.pending.values()) if (call.sentOn === this.generation) n++;
    return n;
  }

  private write(frame: ClientFrame): void {
    this.lastSent = Date.now();
    this.transport?.send(encodeClientFrame(frame));
  }

  private expire(call: PendingCall): void {
    const queued = this.queue.indexOf(call);
    if (queued >= 0) this.queue.splice(queued, 1);
    if (!this.pending.delete(call.id) && queued < 0) return;
    call.reject(new NoReplyError(call.kind, "timeout"));
    this.pump();
  }

  private afterReply(kind: RequestKind, request: Requests[RequestKind]["request"]): void {
    if (kind === "watchPresence") {
      for (const user of (request as Requests["watchPresence"]["request"]).userIds) this.watched.add(user);
    } else if (kind === "unwatchPresence") {
      for (const user of (request as Requests["unwatchPresence"]["request"]).userIds) this.watched.delete(user);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Incoming frames

  private receive(transport: Transport, bytes: Uint8Array): void {
    if (transport !== this.transport) return;
    this.lastReceived = Date.now();
    let frames: ServerFrame[];
    try {
      frames = decodeServerFrames(bytes);
    } catch (err) {
      this.emitter.emit("error", err as Error);
      transport.close(CloseCode.PROTOCOL_VIOLATION, "undecodable server frame");
      return;
    }
    for (const frame of frames) {
      if (frame.frame.case === "reply") this.reply(frame.frame.value);
      else if (frame.frame.case === "event") this.event(frame.frame.value);
    }
  }

  private reply(reply: Reply): void {
    const call = this.pending.get(reply.requestId);
    if (!call) return;
    this.pending.delete(reply.requestId);
    clearTimeout(call.timer);
    const result = reply.result;
    if (result.case === "error") call.reject(new ChatwireError(call.kind, result.value as ErrorMessage));
    else call.resolve(result.value);
    this.pump();
  }

  private event(event: Event): void {
    const kind = event.kind;
    if (kind.case === undefined) return;
    switch (kind.case) {
      case "room":
        if (!this.liveRoomEvent(kind.value)) return;
        break;
      case "disconnect":
        this.disconnect = kind.value;
        break;
      case "tokenExpiring":
        this.refreshSoon();
        break;
      case "receiptsChanged":
        this.receiptsChanged(kind.value.roomId, kind.value.receipts);
        break;
    }
    this.deliver(kind);
  }

  private deliver(kind: ChatwireEvent): void {
    if (!EVENTS_KINDS.includes(kind.case)) return;
    this.emitter.emit(kind.case, kind.value as never);
    this.emitter.emit("event", kind);
  }

  /** Applies a live room event exactly once by seq; returns whether it is new. */
  private liveRoomEvent(event: RoomEvent): boolean {
    const room = this.rooms.get(event.roomId);
    if (!room) return true;
    if (event.seq <= room.lastSeq) return false;
    if (!room.live) {
      // Catching up: the event may be newer than the replayed pages (it can arrive in the same
      // read as the last Subscribe reply). Held, and applied in seq order once the replay is
      // done; past the cap, the gap it leaves is repaired like any other.
      if (room.held.length < MAX_HELD) room.held.push(event);
      return false;
    }
    if (event.seq > room.lastSeq + 1n) {
      // A gap: replay from the last applied seq instead.
      room.live = false;
      room.held.push(event);
      this.catchUp(room).catch((err) => this.emitter.emit("error", err));
      return false;
    }
    this.apply(room, event);
    return true;
  }

  private apply(room: RoomState, event: RoomEvent): void {
    room.lastSeq = event.seq;
    const kind = event.kind;
    if (kind.case === "memberJoined") room.members.add(kind.value.userId);
    else if (kind.case === "memberLeft") room.members.delete(kind.value.userId);
    else if (kind.case === "messageCreated" && event.sender === this.userId) {
      const message = this.outbox.get(kind.value.clientMsgId);
      if (message?.acknowledge(event.seq)) {
        this.settled(message);
        this.statusChanged(message, room);
      }
    }
  }

  /** Pages Subscribe until the room is live; replayed events are delivered like live ones. */
  private catchUp(room: RoomState): Promise<void> {
    if (room.catchingUp) return room.catchingUp;
    const run = async () => {
      for (;;) {
        let page;
        try {
          page = await this.subscribe({ roomId: room.roomId, afterSeq: room.lastSeq });
        } catch (err) {
          if (err instanceof ChatwireError && err.field === "after_seq") {
            room.lastSeq = 0n; // the local copy is ahead of the server; start over.
            continue;
          }
          throw err;
        }
        if (this.rooms.get(room.roomId) !== room) return;
        for (const event of page.events) {
          if (event.seq <= room.lastSeq) continue;
          this.apply(room, event);
          this.deliver({ case: "room", value: event });
        }
        if (page.complete) {
          // A held event past a gap pages again, as long as the pages still bring events.
          if (this.releaseHeld(room, page.events.length === 0)) {
            room.live = true;
            return;
          }
        }
      }
    };
    room.catchingUp = run().finally(() => (room.catchingUp = null));
    return room.catchingUp;
  }

  /**
   * Applies and delivers the held live events that follow the last applied seq, in seq order.
   * Returns false, leaving the rest held, at a gap (unless `acceptGaps`: the log has nothing
   * to fill it with).
   */
  private releaseHeld(room: RoomState, acceptGaps: boolean): boolean {
    room.held.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    while (room.held.length > 0) {
      const event = room.held[0]!;
      if (event.seq > room.lastSeq + 1n && !acceptGaps) return false;
      room.held.shift();
      if (event.seq <= room.lastSeq) continue;
      this.apply(room, event);
      this.deliver({ case: "room", value: event });
    }
    return true;
  }

  /** Members and watermarks of a room, for message status. */
  private async loadReceipts(room: RoomState): Promise<void> {
    const members = await this.listMembers({ roomId: room.roomId });
    room.members.clear();
    for (const m of members.members) room.members.add(m.userId);
    const receipts = await this.getReceipts({ roomId: room.roomId });
    this.receiptsChanged(room.roomId, receipts.receipts);
  }

  private receiptsChanged(roomId: string, receipts: { userId: string; deliveredSeq: bigint; readSeq: bigint }[]): void {
    const room = this.rooms.get(roomId);
    if (!room) return;
    for (const r of receipts) room.mark(r.userId, r.deliveredSeq, r.readSeq);
    for (const message of this.outbox.inRoom(roomId)) this.statusChanged(message, room);
    this.outbox.prune();
  }

  private statusChanged(message: OutgoingMessage, room: RoomState | undefined): void {
    if (room && message.seq !== undefined) {
      message.advance(statusFromReceipts(message.seq, this.userId, room.members, room.receipts));
    }
    // Without a followed room no receipt can move it further: forget it once acknowledged.
    if (!room && message.status !== "pending") this.outbox.remove(message.clientMsgId);
    this.emitter.emit("status", message);
  }

  private refreshSoon(): void {
    const source = this.options.refreshToken ?? (typeof this.options.token === "function" ? this.options.token : undefined);
    if (!source) return;
    Promise.resolve(source())
      .then((token) => this.refresh({ token }))
      .then((response) => this.emitter.emit("tokenRefreshed", response))
      .catch((err) => this.emitter.emit("error", err));
  }

  // ---------------------------------------------------------------------------------------
  // Outbox

  private transmit(message: OutgoingMessage): void {
    if (message.status !== "pending") return;
    message.attempts++;
    this.transmitting = true;
    const reply = this.send(message.request);
    this.transmitting = false;
    reply.then(
      (response) => {
        if (message.acknowledge(response.seq)) {
          this.settled(message);
          this.statusChanged(message, this.rooms.get(message.roomId));
        }
      },
      (err: Error) => this.sendFailed(message, err),
    );
  }

  private sendFailed(message: OutgoingMessage, err: Error): void {
    if (message.status !== "pending") return;
    if (err instanceof ChatwireError && !err.retryable) {
      if (message.fail(err)) {
        this.settled(message);
        this.emitter.emit("status", message);
      }
      return;
    }
    if (err instanceof NoReplyError && err.reason === "connection-lost") return; // resent by resume()
    if (err instanceof NoReplyError && err.reason === "closed") return;
    const wait = err instanceof ChatwireError ? err.retryAfterMs : 0;
    const attempts = message.attempts;
    setTimeout(() => {
      // Skipped when a resume has sent it again meanwhile.
      if (this.state === "connected" && message.attempts === attempts) this.transmit(message);
    }, wait);
  }
}

function newClientMsgId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}

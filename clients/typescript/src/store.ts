// Where the outbox keeps unsent messages between runs of the app. The client writes a message
// when `sendMessage` creates it and deletes it once the server stored it (or it failed), and
// loads what is left before its first connection, so a message survives a page reload or a
// process restart and is resent with the same client_msg_id (the server keeps it once).

/** One unsent message as stored: its `SendRequest` in protobuf binary. */
export interface StoredMessage {
  /** The idempotency key, also the record's key. */
  clientMsgId: string;
  /** The room. */
  roomId: string;
  /** `toBinary(SendRequestSchema, request)`. */
  request: Uint8Array;
  /** When `sendMessage` created it (ms since the epoch); restored in this order. */
  createdAtMs: number;
}

/**
 * A persistent outbox. Methods may be synchronous or return promises; the client calls them in
 * order and reports failures as `error` events (a failing store never stops sending).
 */
export interface OutboxStore {
  /** Every stored message. */
  load(): Promise<StoredMessage[]> | StoredMessage[];
  /** Stores (or replaces) one message. */
  put(message: StoredMessage): Promise<void> | void;
  /** Forgets one message; unknown ids are not an error. */
  delete(clientMsgId: string): Promise<void> | void;
}

/** The default: memory only, lost with the process or page. */
export class MemoryOutboxStore implements OutboxStore {
  private readonly records = new Map<string, StoredMessage>();

  load(): StoredMessage[] {
    return [...this.records.values()];
  }

  put(message: StoredMessage): void {
    this.records.set(message.clientMsgId, message);
  }

  delete(clientMsgId: string): void {
    this.records.delete(clientMsgId);
  }
}

// The few IndexedDB types used, so that the SDK compiles without the DOM library's globals.
interface IdbRequest<T> {
  result: T;
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface IdbOpenRequest extends IdbRequest<IdbDatabase> {
  onupgradeneeded: (() => void) | null;
}
interface IdbDatabase {
  objectStoreNames: { contains(name: string): boolean };
  createObjectStore(name: string, options: { keyPath: string }): unknown;
  transaction(store: string, mode: "readonly" | "readwrite"): {
    oncomplete: (() => void) | null;
    onerror: (() => void) | null;
    error: unknown;
    objectStore(name: string): {
      getAll(): IdbRequest<StoredMessage[]>;
      put(value: StoredMessage): IdbRequest<unknown>;
      delete(key: string): IdbRequest<unknown>;
    };
  };
}
/** The part of `indexedDB` (an `IDBFactory`) the store uses. */
export interface IndexedDbFactory {
  open(name: string, version?: number): unknown;
}

const OBJECT_STORE = "messages";

/**
 * A browser outbox in IndexedDB: one database per `name` (use one per user, say
 * `chatwire-outbox:alice`, so that two accounts in one browser never resend each other's
 * messages), one record per message keyed by client_msg_id.
 */
export class IndexedDbOutboxStore implements OutboxStore {
  private db: Promise<IdbDatabase> | null = null;

  constructor(
    readonly name = "chatwire-outbox",
    private readonly factory: IndexedDbFactory | undefined = (globalThis as { indexedDB?: IndexedDbFactory }).indexedDB,
  ) {}

  private open(): Promise<IdbDatabase> {
    if (this.db) return this.db;
    const factory = this.factory;
    if (!factory) return Promise.reject(new Error("IndexedDB is not available here"));
    this.db = new Promise<IdbDatabase>((resolve, reject) => {
      const request = factory.open(this.name, 1) as IdbOpenRequest;
      request.onupgradeneeded = () => {
        if (!request.result.objectStoreNames.contains(OBJECT_STORE)) {
          request.result.createObjectStore(OBJECT_STORE, { keyPath: "clientMsgId" });
        }
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    return this.db;
  }

  private async run<T>(mode: "readonly" | "readwrite", op: (store: ReturnType<ReturnType<IdbDatabase["transaction"]>["objectStore"]>) => IdbRequest<T>): Promise<T> {
    const db = await this.open();
    return new Promise<T>((resolve, reject) => {
      // Resolved when the transaction commits, so a write is durable before a reload.
      const tx = db.transaction(OBJECT_STORE, mode);
      const request = op(tx.objectStore(OBJECT_STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error ?? request.error);
    });
  }

  async load(): Promise<StoredMessage[]> {
    const all = await this.run("readonly", (store) => store.getAll());
    return all.map((r) => ({ ...r, request: new Uint8Array(r.request) }));
  }

  async put(message: StoredMessage): Promise<void> {
    await this.run("readwrite", (store) => store.put(message));
  }

  async delete(clientMsgId: string): Promise<void> {
    await this.run("readwrite", (store) => store.delete(clientMsgId));
  }
}

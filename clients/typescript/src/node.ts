/// <reference types="node" />
// @chatwire/client/node: what only Node can run (kept out of the main entry so that browser
// bundles never see `node:fs`).
import { readFile, rename, writeFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { OutboxStore, StoredMessage } from "./store.js";

interface FileRecord {
  clientMsgId: string;
  roomId: string;
  request: string; // base64
  createdAtMs: number;
}

/**
 * A Node outbox in one JSON file: rewritten whole on every change (write to a temporary file,
 * then rename, so a crash leaves the old or the new content, never a torn one). Meant for the
 * few messages an app has unsent at a time. Use one file per user.
 */
export class FileOutboxStore implements OutboxStore {
  private records: Map<string, StoredMessage> | null = null;
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  private async read(): Promise<Map<string, StoredMessage>> {
    if (this.records) return this.records;
    let parsed: FileRecord[] = [];
    try {
      parsed = JSON.parse(await readFile(this.path, "utf8")) as FileRecord[];
    } catch (err) {
      if ((err as { code?: string }).code !== "ENOENT") throw err;
    }
    this.records = new Map(
      parsed.map((r) => [r.clientMsgId, { clientMsgId: r.clientMsgId, roomId: r.roomId, request: new Uint8Array(Buffer.from(r.request, "base64")), createdAtMs: r.createdAtMs }]),
    );
    return this.records;
  }

  /** Runs changes one at a time, in call order. */
  private change(edit: (records: Map<string, StoredMessage>) => void): Promise<void> {
    const next = this.chain.then(async () => {
      const records = await this.read();
      edit(records);
      const out: FileRecord[] = [...records.values()].map((r) => ({
        clientMsgId: r.clientMsgId,
        roomId: r.roomId,
        request: Buffer.from(r.request).toString("base64"),
        createdAtMs: r.createdAtMs,
      }));
      await mkdir(dirname(this.path), { recursive: true });
      const tmp = `${this.path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(out));
      await rename(tmp, this.path);
    });
    this.chain = next.catch(() => {});
    return next;
  }

  async load(): Promise<StoredMessage[]> {
    await this.chain;
    return [...(await this.read()).values()];
  }

  put(message: StoredMessage): Promise<void> {
    return this.change((records) => records.set(message.clientMsgId, message));
  }

  delete(clientMsgId: string): Promise<void> {
    return this.change((records) => records.delete(clientMsgId));
  }
}

export type { OutboxStore, StoredMessage } from "./store.js";

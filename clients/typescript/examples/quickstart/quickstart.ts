import { ChatwireClient } from "@chatwire/client";
import WebSocket from "ws"; // Node only: browsers pass nothing and use their own WebSocket

// The server's address and a token (`chatwire token --user alice` on a development server).
const url = process.env.CHATWIRE_URL ?? "ws://127.0.0.1:8080/v1/ws";
const token = process.env.CHATWIRE_TOKEN ?? "";

const client = await ChatwireClient.connect({ url, token, WebSocket });
const { room } = await client.createGroup({ name: "quick start" });
const roomId = room!.id;

// Every message of the room, replayed then live; here we stop at our own.
const echoed = new Promise<void>((resolve) =>
  client.on("room", (e) => {
    if (e.kind.case !== "messageCreated") return;
    console.log(`${e.sender}: ${e.kind.value.content?.text}`);
    if (e.sender === client.userId) resolve();
  }),
);
await client.subscribeRoom(roomId);
const seq = await client.sendMessage(roomId, "hello").sent;
await echoed;
console.log(`stored at seq ${seq} in room ${roomId}`);
client.close();

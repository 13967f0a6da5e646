#!/usr/bin/env node
// FR-11 as a busy Node `ws` client sees it (issue 16, R-2.3.6, R-2.3.10): sends one binary
// message far over the frame limit, still writing when the server refuses it, and expects the
// server's close frame with 4007 (FRAME_TOO_LARGE). A server that drops the connection with
// unread input resets it, and `ws` then reports 1006 (it did in 5 of 6 runs before
// server/src/transport/ws.rs kept the socket open after refusing). The conformance suite's
// own client reads the close frame either way, so this check is the one that catches it.
//
//   NODE_PATH=.../node_modules node conformance/harness-drivers/oversized-message.cjs \
//       ws://127.0.0.1:PORT/v1/ws [RUNS]
//
// Exit status 0 when every run got 4007.
'use strict';

const WebSocket = require('ws');

const [url, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 3);
const SIZE = 24 << 20;

function once() {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, 'chatwire.v1');
    const guard = setTimeout(() => { socket.terminate(); resolve('no close within 20 s'); }, 20000);
    socket.on('open', () => socket.send(Buffer.alloc(SIZE)));
    socket.on('error', () => {});
    socket.on('close', (code) => { clearTimeout(guard); resolve(code); });
  });
}

(async () => {
  if (!url) {
    console.error('usage: oversized-message.cjs ws://HOST:PORT/v1/ws [RUNS]');
    process.exit(2);
  }
  const codes = [];
  for (let i = 0; i < runs; i += 1) codes.push(await once());
  const good = codes.filter((code) => code === 4007).length;
  console.log(`oversized message (${SIZE} bytes): close 4007 in ${good} of ${runs} runs: ${codes.join(' ')}`);
  process.exit(good === runs ? 0 : 1);
})();

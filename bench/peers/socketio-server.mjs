// A Socket.IO 4.8 chat server for the side-by-side benchmark (bench/peers/socketio.mjs starts
// it): websocket transport only, no compression, rooms joined by name, each message broadcast
// to its room and acknowledged after the broadcast (in memory: nothing is stored).
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const http = createServer();
const io = new Server(http, { transports: ['websocket'], perMessageDeflate: false });
let seq = 0;
io.on('connection', (socket) => {
  socket.on('join', (room, ack) => {
    socket.join(room);
    ack?.(true);
  });
  socket.on('msg', (room, text, ack) => {
    seq += 1;
    io.to(room).emit('msg', { room, text, seq, sender: socket.id });
    ack?.(seq);
  });
});
http.listen(0, '127.0.0.1', () => {
  console.log(`listening ${http.address().port}`);
});

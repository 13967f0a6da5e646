#!/usr/bin/env python3
"""An independent QUIC peer for Chatwire: aioquic (PyPI), not quinn.

    python3 conformance/interop/aioquic_client.py HOST PORT CERT_DER TOKEN ROOM_ID

Connects with ALPN chatwire/1, trusting only the server's DER certificate (server name
localhost), opens one bidirectional stream, writes a length-prefixed ClientFrame Connect (id 1)
and waits for its reply, then a Send (id 2) to ROOM_ID and waits for that reply, and prints one
JSON line: {"alpn": ..., "user_id": ..., "seq": ...}. Exits non-zero on an error reply or a bad frame.
The protobuf bytes are encoded by hand (field numbers from protocol/proto/chatwire/v1/*.proto),
so nothing here shares code with the server. Run by server/tests/quic.rs.
"""

import asyncio
import json
import ssl
import sys

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

# --- protobuf wire format -------------------------------------------------------------------


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data


def parse(data):
    """Fields of one message: {number: [value, ...]} (varints as int, others as bytes)."""
    fields, pos = {}, 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            length, pos = read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def read_varint(data, pos):
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


# --- Chatwire frames (frames.proto, session.proto, messages.proto) -------------------------


def client_frame(request_id, request_field, request):
    # ClientFrame { uint64 id = 1; oneof request { ... } }
    message = field_varint(1, request_id) + field_bytes(request_field, request)
    return varint(len(message)) + message


def connect_frame(token):
    info = field_bytes(1, "aioquic-interop") + field_bytes(2, "1") + field_bytes(3, "python")
    # ConnectRequest { token = 1; ClientInfo client = 2 }; ClientFrame.connect = 10
    return client_frame(1, 10, field_bytes(1, token) + field_bytes(2, info))


def send_frame(room_id, text):
    # SendRequest { room_id = 1; client_msg_id = 2; Content content = 3 { text = 1 } }
    content = field_bytes(1, text)
    request = field_bytes(1, room_id) + field_bytes(2, "aioquic-1") + field_bytes(3, content)
    return client_frame(2, 40, request)


async def read_frame(reader):
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
        if shift > 63:
            raise ValueError("malformed length prefix")
    return await reader.readexactly(length)


async def wait_reply(reader, request_id, replies):
    while request_id not in replies:
        # ServerFrame { Reply reply = 1; Event event = 2 }: events are skipped.
        frame = parse(await read_frame(reader))
        for reply in frame.get(1, []):
            fields = parse(reply)
            got = fields.get(1, [0])[0]
            if 2 in fields:  # Reply.error
                raise SystemExit(f"request {got} failed: {parse(fields[2][0])}")
            replies[got] = fields


async def main(host, port, cert_path, token, room_id):
    with open(cert_path, "rb") as f:
        pem = ssl.DER_cert_to_PEM_cert(f.read())
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["chatwire/1"])
    configuration.server_name = "localhost"
    configuration.load_verify_locations(cadata=pem.encode())
    async with connect(host, int(port), configuration=configuration) as client:
        reader, writer = await client.create_stream()
        # Requests before the Connect reply are refused: one after the other.
        replies = {}
        writer.write(connect_frame(token))
        await wait_reply(reader, 1, replies)
        writer.write(send_frame(room_id, "hello from aioquic"))
        await wait_reply(reader, 2, replies)
        connected = parse(replies[1][10][0])  # ConnectResponse { session_id = 1; user_id = 2 }
        sent = parse(replies[2][40][0])  # SendResponse { seq = 1 }
        alpn = client._quic.tls.alpn_negotiated
        print(
            json.dumps(
                {
                    "alpn": alpn,
                    "user_id": connected[2][0].decode(),
                    "seq": sent[1][0],
                }
            )
        )
        client.close(error_code=4012, reason_phrase="bye")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:]))

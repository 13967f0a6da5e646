// The frame codec (docs/protocol.md section 2.1): a varint length prefix, then one protobuf
// message encoded by Wire. Pure functions over bytes; no I/O, no clock.
package dev.chatwire.client

import chatwire.v1.ClientFrame
import chatwire.v1.ServerFrame
import com.squareup.wire.ProtoAdapter
import java.io.IOException

/** A frame's bytes could not be read. */
public class FrameDecodeException(message: String, cause: Throwable? = null) : IOException(message, cause)

/** Length-prefixed frames of protocol v1. */
public object FrameCodec {
  /** `value` as an unsigned LEB128 varint in its shortest form. */
  public fun encodeVarint(value: Long): ByteArray {
    val out = ArrayList<Byte>(10)
    var v = value
    while (v and 0x7fL.inv() != 0L) {
      out.add(((v and 0x7f) or 0x80).toByte())
      v = v ushr 7
    }
    out.add(v.toByte())
    return out.toByteArray()
  }

  /** The varint at `offset`: its value and the offset after it; throws on a malformed one. */
  public fun decodeVarint(bytes: ByteArray, offset: Int): Pair<Long, Int> {
    var value = 0L
    for (i in 0 until 10) {
      val at = offset + i
      if (at >= bytes.size) throw FrameDecodeException("length prefix ends early")
      val byte = bytes[at].toInt() and 0xff
      if (i == 9 && byte > 1) throw FrameDecodeException("length prefix exceeds 64 bits")
      value = value or ((byte and 0x7f).toLong() shl (7 * i))
      if (byte < 0x80) return value to at + 1
    }
    throw FrameDecodeException("length prefix longer than 10 bytes")
  }

  /** One frame: prefix + message. */
  public fun <M : Any> encodeFrame(adapter: ProtoAdapter<M>, message: M): ByteArray {
    val body = adapter.encode(message)
    return encodeVarint(body.size.toLong()) + body
  }

  /** Every whole frame of `bytes` (one WebSocket message may hold several); a partial frame throws. */
  public fun <M : Any> decodeFrames(adapter: ProtoAdapter<M>, bytes: ByteArray): List<M> {
    val frames = ArrayList<M>()
    var offset = 0
    while (offset < bytes.size) {
      val (length, next) = decodeVarint(bytes, offset)
      if (length < 0 || length > bytes.size - next) throw FrameDecodeException("message ends inside a frame")
      val end = next + length.toInt()
      try {
        frames.add(adapter.decode(bytes.copyOfRange(next, end)))
      } catch (e: IOException) {
        throw FrameDecodeException("undecodable ${adapter.type?.simpleName} frame: ${e.message}", e)
      } catch (e: IllegalStateException) {
        throw FrameDecodeException("undecodable ${adapter.type?.simpleName} frame: ${e.message}", e)
      } catch (e: IllegalArgumentException) {
        throw FrameDecodeException("undecodable ${adapter.type?.simpleName} frame: ${e.message}", e)
      }
      offset = end
    }
    return frames
  }

  /** A client frame's bytes. */
  public fun encodeClientFrame(frame: ClientFrame): ByteArray = encodeFrame(ClientFrame.ADAPTER, frame)

  /** Every server frame of one WebSocket message. */
  public fun decodeServerFrames(bytes: ByteArray): List<ServerFrame> = decodeFrames(ServerFrame.ADAPTER, bytes)
}

// The codec against conformance/vectors: every golden frame decodes with the Wire types, carries
// the case its JSON names, and re-encodes to the same bytes.
package dev.chatwire.client

import chatwire.v1.ClientFrame
import chatwire.v1.ServerFrame
import java.io.File
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory

class CodecTest {
  private val dir = File(repoRoot, "conformance/vectors")

  private data class Vector(val name: String, val message: String, val bin: String, val json: String)

  /** The manifest's vectors (a flat JSON list of objects with string fields). */
  private fun vectors(): List<Vector> {
    val text = File(dir, "manifest.json").readText()
    val obj = Regex("""\{\s*"name":\s*"([^"]+)",\s*"message":\s*"([^"]+)",\s*"bin":\s*"([^"]+)",\s*"json":\s*"([^"]+)"""")
    return obj.findAll(text).map { Vector(it.groupValues[1], it.groupValues[2], it.groupValues[3], it.groupValues[4]) }.toList()
  }

  @Test
  fun `the manifest lists vectors of both frame types`() {
    val all = vectors()
    assertTrue(all.size >= 60, "${all.size} vectors")
    assertEquals(Regex("\"name\":").findAll(File(dir, "manifest.json").readText()).count(), all.size, "every manifest entry parsed")
    assertEquals(setOf("chatwire.v1.ClientFrame", "chatwire.v1.ServerFrame"), all.map { it.message }.toSet())
  }

  @TestFactory
  fun `every vector decodes and re-encodes byte for byte`(): List<DynamicTest> = vectors().map { v ->
    DynamicTest.dynamicTest("vector ${v.name}") {
      val bin = File(dir, v.bin).readBytes()
      val json = File(dir, v.json).readText()
      // The top-level oneof case the JSON names (lowerCamel), then the nested one for replies and events.
      val keys = Regex("""^\s{2}"(\w+)":""", RegexOption.MULTILINE).findAll(json).map { it.groupValues[1] }.toList()
      if (v.message == "chatwire.v1.ClientFrame") {
        val frames = FrameCodec.decodeFrames(ClientFrame.ADAPTER, bin)
        assertEquals(1, frames.size, "exactly one frame, no leftover bytes")
        val again = FrameCodec.encodeFrame(ClientFrame.ADAPTER, frames[0])
        if (v.name in WIRE_ONEOF_ORDER) {
          // Wire writes a oneof declared between fields after them: same fields, same bytes per
          // field, another order (docs/sdk-kotlin.md). Both decode to the same message.
          assertEquals(bin.size, again.size)
          assertEquals(bin.sorted(), again.sorted())
          assertEquals(frames[0], FrameCodec.decodeFrames(ClientFrame.ADAPTER, again).single())
          assertTrue(!bin.contentEquals(again), "${v.name} now re-encodes byte for byte: drop it from WIRE_ONEOF_ORDER")
        } else {
          assertArrayEquals(bin, again, "re-encoding gives the .bin")
        }
        val case = keys.firstOrNull { it != "id" && it != "traceId" }
        if (case != null) {
          val kind = RequestKind.entries.single { lowerCamel(it.case) == case }
          assertTrue(ClientFrame.ADAPTER.encode(frames[0]).isNotEmpty())
          assertEquals(kind.case, requestCase(frames[0]), "the decoded frame carries the case the JSON names")
        }
      } else {
        val frames = FrameCodec.decodeFrames(ServerFrame.ADAPTER, bin)
        assertEquals(1, frames.size, "exactly one frame, no leftover bytes")
        assertArrayEquals(bin, FrameCodec.encodeFrame(ServerFrame.ADAPTER, frames[0]), "re-encoding gives the .bin")
        when (keys.firstOrNull()) {
          "reply" -> assertTrue(frames[0].reply != null, "a reply, as the JSON says")
          "event" -> assertTrue(frames[0].event != null, "an event, as the JSON says")
        }
      }
    }
  }

  @Test
  fun `varints - shortest form out, non-shortest in, 11-byte prefixes refused`() {
    assertArrayEquals(byteArrayOf(0xac.toByte(), 0x02), FrameCodec.encodeVarint(300))
    assertEquals(0L, FrameCodec.decodeVarint(byteArrayOf(0x80.toByte(), 0x00), 0).first)
    assertThrows(FrameDecodeException::class.java) { FrameCodec.decodeVarint(ByteArray(11) { 0x80.toByte() }, 0) }
    val e = assertThrows(FrameDecodeException::class.java) { FrameCodec.decodeFrames(ClientFrame.ADAPTER, byteArrayOf(5, 1, 2)) }
    assertTrue(e.message!!.contains("inside a frame"))
    val two = FrameCodec.encodeClientFrame(ClientFrame(id = 1)) + byteArrayOf(0)
    assertEquals(2, FrameCodec.decodeFrames(ClientFrame.ADAPTER, two).size, "a zero-length frame is a default message")
    assertThrows(FrameDecodeException::class.java) { FrameCodec.decodeServerFrames(byteArrayOf(2, 0x0a, 0x05)) }
  }

  @Test
  fun `backoff is full jitter under a doubling ceiling`() {
    val b = Backoff(100, 1000)
    val r = kotlin.random.Random(7)
    repeat(200) { attempt ->
      val d = b.delayMs(attempt % 8, 0, r)
      assertTrue(d in 0..minOf(1000L, 100L shl (attempt % 8)), "attempt ${attempt % 8}: $d")
    }
    assertEquals(500L, b.delayMs(0, 500, kotlin.random.Random(1)).coerceAtLeast(500), "never below the floor")
  }
}

/**
 * The vectors whose message declares a oneof before a later field (HistoryRequest.position):
 * Square Wire encodes the oneof last, prost and protobuf-es in field-number order.
 */
val WIRE_ONEOF_ORDER = setOf("client/history/before_seq", "client/history/after_seq")

/** `create_group` -> `createGroup`. */
fun lowerCamel(snake: String): String =
  snake.split('_').mapIndexed { i, p -> if (i == 0) p else p.replaceFirstChar { it.uppercase() } }.joinToString("")

/** The request case a decoded ClientFrame carries (Wire's getter of each case: `getCreate_group`). */
fun requestCase(frame: ClientFrame): String? =
  RequestKind.entries.firstOrNull { kind ->
    ClientFrame::class.java.getMethod("get" + kind.case.replaceFirstChar { it.uppercase() }).invoke(frame) != null
  }?.case

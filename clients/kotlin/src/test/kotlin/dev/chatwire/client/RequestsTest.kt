// Every rpc of ChatwireService, enumerated from the checked-in descriptor set, has its generated
// suspend method, and each one goes to a real server and comes back typed.
package dev.chatwire.client

import chatwire.v1.ClientFrame
import com.squareup.wire.FieldEncoding
import com.squareup.wire.ProtoAdapter
import com.squareup.wire.ProtoReader
import java.io.File
import java.lang.reflect.InvocationTargetException
import java.lang.reflect.Method
import kotlin.coroutines.Continuation
import kotlin.coroutines.intrinsics.suspendCoroutineUninterceptedOrReturn
import okio.Buffer
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Test

class RequestsTest {
  /** (service, rpc, input type, output type) of every method in the descriptor set. */
  private data class Rpc(val service: String, val name: String, val input: String, val output: String)

  private fun descriptorRpcs(): List<Rpc> {
    val bytes = File(repoRoot, "protocol/src/gen/chatwire.v1.fds.binpb").readBytes()
    val out = ArrayList<Rpc>()
    fun fields(b: okio.ByteString, each: (Int, ProtoReader) -> Unit) {
      val reader = ProtoReader(Buffer().write(b))
      val token = reader.beginMessage()
      while (true) {
        val tag = reader.nextTag()
        if (tag == -1) break
        each(tag, reader)
      }
      reader.endMessageAndGetUnknownFields(token)
    }
    fun bytesOf(r: ProtoReader) = ProtoAdapter.BYTES.decode(r)
    fields(okio.ByteString.of(*bytes)) { tag, r ->
      if (tag != 1) return@fields r.skip()
      fields(bytesOf(r)) { ftag, fr -> // FileDescriptorProto
        if (ftag != 6) return@fields fr.skip()
        var service = ""
        val methods = ArrayList<Triple<String, String, String>>()
        fields(bytesOf(fr)) { stag, sr -> // ServiceDescriptorProto
          when (stag) {
            1 -> service = ProtoAdapter.STRING.decode(sr)
            2 -> {
              var name = ""
              var input = ""
              var output = ""
              fields(bytesOf(sr)) { mtag, mr -> // MethodDescriptorProto
                when (mtag) {
                  1 -> name = ProtoAdapter.STRING.decode(mr)
                  2 -> input = ProtoAdapter.STRING.decode(mr)
                  3 -> output = ProtoAdapter.STRING.decode(mr)
                  else -> mr.skip()
                }
              }
              methods.add(Triple(name, input, output))
            }
            else -> sr.skip()
          }
        }
        methods.forEach { (n, i, o) -> out.add(Rpc(service, n, i, o)) }
      }
    }
    return out
  }

  @Test
  fun `the generated surface has one method per rpc of the descriptor, in order`() {
    val rpcs = descriptorRpcs().filter { it.service == "ChatwireService" }
    assertEquals(45, rpcs.size, "ChatwireService has 45 rpcs today")
    assertEquals(rpcs.map { it.name }, RequestKind.entries.map { it.rpc })
    for (rpc in rpcs) {
      val m = method(rpc.name)
      assertEquals(rpc.input.removePrefix(".chatwire.v1."), m.parameterTypes[0].simpleName, rpc.name)
      assertEquals(rpc.output.removePrefix(".chatwire.v1."), responseType(rpc.name), rpc.name)
    }
  }

  private fun method(rpc: String): Method =
    ChatwireRequests::class.java.methods.single { it.name == rpc.replaceFirstChar { c -> c.lowercase() } && it.parameterCount == 3 }

  /** The reply case's type, from Reply's getter of the same case. */
  private fun responseType(rpc: String): String {
    val kind = RequestKind.entries.single { it.rpc == rpc }
    return chatwire.v1.Reply::class.java.getMethod("get" + kind.case.replaceFirstChar { it.uppercase() }).returnType.simpleName
  }

  /** Calls a generated suspend method by reflection. */
  private suspend fun invoke(client: ChatwireClient, m: Method, request: Any): Any? =
    suspendCoroutineUninterceptedOrReturn { cont: Continuation<Any?> ->
      try {
        m.invoke(client, request, CallOptions(timeoutMs = 20_000), cont)
      } catch (e: InvocationTargetException) {
        throw e.targetException
      }
    }

  @Test
  fun `every rpc reaches a real server and comes back typed`() = within {
    val server = TestServer.start()
    val client = server.client("alice")
    try {
      val outcomes = LinkedHashMap<String, String>()
      for (kind in RequestKind.entries) {
        val m = method(kind.rpc)
        @Suppress("UNCHECKED_CAST")
        val adapter = ProtoAdapter.get(m.parameterTypes[0]) as ProtoAdapter<Any>
        val request = adapter.decode(ByteArray(0)) // the default (empty) request
        val outcome = try {
          val response = invoke(client, m, request)
          assertEquals(responseType(kind.rpc), response!!.javaClass.simpleName, kind.rpc)
          "reply"
        } catch (e: ChatwireException) {
          // Typed refusal: the empty request names no room, no user, no token.
          assertEquals(kind, e.request)
          assertTrue(e.codeNumber != 0, "${kind.rpc}: a code")
          e.code.name
        } catch (e: Throwable) {
          fail("${kind.rpc}: neither a reply nor a typed error: $e")
        }
        outcomes[kind.rpc] = outcome
      }
      assertEquals(45, outcomes.size)
      // Spot checks that the outcomes are the server's and not the SDK's.
      assertEquals("FAILED_PRECONDITION", outcomes["Connect"], "Connect on an open session")
      assertEquals("reply", outcomes["Ping"])
      assertNotEquals("reply", outcomes["Send"], "Send without a room or client_msg_id is refused")
      assertEquals(ChatwireCloseCode.CLIENT_CLOSED, ChatwireCloseCode.of(4012))
      assertTrue(client.state.value is ConnectionState.Connected, "no request closed the session")
    } finally {
      client.closeAndJoin()
      server.stop()
    }
  }

  @Test
  fun `a refused request throws ChatwireException with code, retryable and field`() = within {
    val server = TestServer.start()
    val client = server.client("alice")
    try {
      val e = runCatching { client.getRoom(chatwire.v1.GetRoomRequest(room_id = "no-such-room")) }.exceptionOrNull()
      assertTrue(e is ChatwireException, "$e")
      e as ChatwireException
      assertTrue(e.code == ChatwireErrorCode.NOT_FOUND || e.code == ChatwireErrorCode.PERMISSION_DENIED, "${e.code}")
      assertEquals(false, e.retryable)
      val frame = ClientFrame(id = 1)
      assertEquals(1L, frame.id)
    } finally {
      client.closeAndJoin()
      server.stop()
    }
  }
}

@Suppress("unused")
private val keepImport = FieldEncoding.VARINT

// The README's quick start and the terminal-chat example, as a person would use them: the built
// jar is installed into a temporary local Maven repository, an empty Maven project declares the
// README's dependency, compiles the README's Kotlin block and examples/terminal-chat, and both
// programs chat with a client of the test through a real server.
package dev.chatwire.client

import chatwire.v1.MarkReadRequest
import chatwire.v1.OpenDirectRequest
import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.runInterruptible
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class QuickStartIT {
  private val sdkDir = File(repoRoot, "clients/kotlin")
  private val readme = File(sdkDir, "README.md").readText()

  private fun block(lang: String, first: String): String =
    Regex("```$lang\\n(.*?)```", RegexOption.DOT_MATCHES_ALL).findAll(readme).map { it.groupValues[1] }
      .firstOrNull { it.trimStart().startsWith(first) } ?: error("README has no $lang block starting with $first")

  /** Runs a command; returns its output, failing on a non-zero exit. */
  private fun run(dir: File, vararg command: String, env: Map<String, String> = emptyMap(), input: String? = null): String {
    println("quickstart test: ${java.time.LocalTime.now()} ${command.first()} ... ${command.last()}")
    val pb = ProcessBuilder(*command).directory(dir).redirectErrorStream(true)
    pb.environment().putAll(env)
    val p = pb.start()
    if (input != null) p.outputStream.use { it.write(input.toByteArray()) } else p.outputStream.close()
    val out = StringBuilder()
    val reader = Thread { p.inputStream.bufferedReader().forEachLine { out.append(it).append('\n') } }.apply { start() }
    check(p.waitFor(5, TimeUnit.MINUTES)) { "${command.joinToString(" ")} did not finish: $out" }
    reader.join()
    check(p.exitValue() == 0) { "${command.joinToString(" ")} exited ${p.exitValue()}:\n$out" }
    return out.toString()
  }

  @Test
  fun `the README quick start and the terminal chat work from the installed jar`() = kotlinx.coroutines.runBlocking {
    val jar = File(System.getProperty("chatwire.jar") ?: error("chatwire.jar is not set"))
    assertTrue(jar.isFile, "$jar is missing (mvn package)")
    val work = Files.createTempDirectory("chatwire-quickstart-").toFile()
    val server = TestServer.start()
    val bob = server.client("bob")
    try {
      // 1. Install the jar into a temporary local repository.
      val repo = File(work, "repo")
      run(sdkDir, "mvn", "-B", "-q", "install:install-file", "-Dfile=${jar.path}", "-DpomFile=pom.xml", "-DlocalRepositoryPath=${repo.path}")
      assertTrue(File(repo, "dev/chatwire/chatwire-client/0.1.0/chatwire-client-0.1.0.jar").isFile)
      // The shared cache must not answer for the SDK: only the temporary repository has it.
      File(System.getProperty("user.home"), ".m2/repository/dev/chatwire/chatwire-client").deleteRecursively()

      // 2. An empty project: the README's dependency, its Kotlin block, the example.
      val app = File(work, "app")
      val src = File(app, "src/main/kotlin").apply { mkdirs() }
      File(src, "QuickStart.kt").writeText(block("kotlin", "// QuickStart.kt"))
      File(sdkDir, "examples/terminal-chat/TerminalChat.kt").copyTo(File(src, "TerminalChat.kt"))
      File(app, "pom.xml").writeText(
        """
        <project xmlns="http://maven.apache.org/POM/4.0.0">
          <modelVersion>4.0.0</modelVersion>
          <groupId>example</groupId>
          <artifactId>quickstart</artifactId>
          <version>1</version>
          <properties>
            <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
            <kotlin.compiler.jvmTarget>11</kotlin.compiler.jvmTarget>
          </properties>
          <repositories>
            <repository><id>chatwire-sdk</id><url>${repo.toURI()}</url></repository>
          </repositories>
          <dependencies>
            ${block("xml", "<dependency>")}
          </dependencies>
          <build>
            <sourceDirectory>src/main/kotlin</sourceDirectory>
            <plugins>
              <plugin>
                <groupId>org.jetbrains.kotlin</groupId>
                <artifactId>kotlin-maven-plugin</artifactId>
                <version>${System.getProperty("kotlin.version")}</version>
                <executions><execution><id>compile</id><goals><goal>compile</goal></goals></execution></executions>
              </plugin>
            </plugins>
          </build>
        </project>
        """.trimIndent(),
      )
      run(app, "mvn", "-B", "-q", "package", "dependency:build-classpath", "-Dmdep.outputFile=cp.txt", "-Dkotlin.compiler.daemon.jvmArgs=Xmx1g")
      val classpath = File(app, "target/classes").path + File.pathSeparator + File(app, "cp.txt").readText().trim()
      val env = mapOf("CHATWIRE_URL" to server.url, "CHATWIRE_TOKEN" to server.token("alice"))

      // 3. The quick start talks to Bob: Bob answers and reads.
      val room = bob.openDirect(OpenDirectRequest(user_id = "alice")).room!!.id
      bob.subscribeRoom(room)
      val bobSide = async(start = CoroutineStart.UNDISPATCHED) {
        val hello = bob.roomEvents.firstWithin("the quick start's message") { it.room_id == room && it.message_created?.content?.text == "hello from Kotlin" }
        bob.markRead(MarkReadRequest(room_id = room, seq = hello.seq))
        bob.sendMessage(room, "hello back").awaitSent()
        hello.seq
      }
      val out = runInterruptible(Dispatchers.IO) { run(app, "java", "-cp", classpath, "QuickStartKt", env = env) }
      val seq = bobSide.await()
      assertTrue(out.contains("stored at seq $seq"), out)
      assertTrue(out.contains("bob answered at seq ${seq + 1}"), out)
      assertTrue(out.contains("status: READ"), out)

      // 4. The terminal chat: shows Bob's messages, sends what is typed.
      val typed = async(start = CoroutineStart.UNDISPATCHED) {
        bob.roomEvents.firstWithin("the terminal's line") { it.room_id == room && it.message_created?.content?.text == "hi from the terminal" }
      }
      bob.sendMessage(room, "hello terminal").awaitSent()
      val chat = runInterruptible(Dispatchers.IO) {
        run(app, "java", "-cp", classpath, "TerminalChatKt", "bob", env = env, input = "hi from the terminal\n/quit\n")
      }
      assertEquals("alice", typed.await().sender)
      assertTrue(chat.contains("bob: hello terminal"), chat)
      assertTrue(chat.contains("sent 1 message(s)"), chat)
    } finally {
      bob.closeAndJoin()
      server.stop()
      work.deleteRecursively()
      File(System.getProperty("user.home"), ".m2/repository/dev/chatwire/chatwire-client").deleteRecursively()
    }
  }
}

// The optional QUIC transport (docs/protocol.md section 2.5), JVM only: Netty's QUIC codec
// (netty-codec-native-quic, quiche + BoringSSL, native code for linux-x86_64 and others). One
// bidirectional stream carries the frames; typing may travel as datagrams. Android has no QUIC
// transport: Netty's native QUIC library is not built for it.
package dev.chatwire.client.quic

import dev.chatwire.client.ChatwireTransport
import dev.chatwire.client.FrameCodec
import dev.chatwire.client.FrameDecodeException
import dev.chatwire.client.TransportFactory
import dev.chatwire.client.TransportListener
import io.netty.bootstrap.Bootstrap
import io.netty.buffer.ByteBuf
import io.netty.buffer.Unpooled
import io.netty.channel.Channel
import io.netty.channel.ChannelFuture
import io.netty.channel.ChannelHandlerContext
import io.netty.channel.ChannelInboundHandlerAdapter
import io.netty.channel.MultiThreadIoEventLoopGroup
import io.netty.channel.nio.NioIoHandler
import io.netty.channel.socket.nio.NioDatagramChannel
import io.netty.handler.codec.quic.QuicChannel
import io.netty.handler.codec.quic.QuicClientCodecBuilder
import io.netty.handler.codec.quic.QuicConnectionCloseEvent
import io.netty.handler.codec.quic.QuicSslContext
import io.netty.handler.codec.quic.QuicSslContextBuilder
import io.netty.handler.codec.quic.QuicStreamChannel
import io.netty.handler.codec.quic.QuicStreamType
import io.netty.util.concurrent.DefaultThreadFactory
import io.netty.util.concurrent.Future
import java.io.ByteArrayOutputStream
import java.net.InetSocketAddress
import java.net.URI
import java.security.cert.CertificateException
import java.security.cert.CertificateFactory
import java.security.cert.X509Certificate
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean
import java.net.Socket
import javax.net.ssl.SSLEngine
import javax.net.ssl.X509ExtendedTrustManager

/** The ALPN id of protocol v1 over QUIC. */
public const val QUIC_ALPN: String = "chatwire/1"

/**
 * Opens QUIC connections to `quic://host:port` URLs, trusting exactly the server certificate
 * given (DER X.509; the development server writes it as `tls-cert.der` in its data folder).
 * Pass it as `ClientConfig(transportFactory = ...)`. [close] stops its I/O thread.
 */
public class QuicTransportFactory(
  trustedCertificateDer: ByteArray,
  /** The QUIC idle timeout (R-2.5.12: at least three heartbeat intervals). */
  private val idleTimeoutMs: Long = 60_000,
) : TransportFactory, AutoCloseable {
  private val group = MultiThreadIoEventLoopGroup(1, DefaultThreadFactory("chatwire-quic", true), NioIoHandler.newFactory())
  private val pinned = trustedCertificateDer.copyOf()

  init {
    // Fails early on bytes that are not a certificate.
    CertificateFactory.getInstance("X.509").generateCertificate(pinned.inputStream()) as X509Certificate
  }

  /**
   * Trusts exactly the pinned certificate (the server's leaf, compared byte for byte): the
   * development certificate is self-signed and not a CA, which a PKIX chain check refuses. The
   * pin replaces host name checks (an extended trust manager, so Netty leaves them to it).
   */
  private val pin = object : X509ExtendedTrustManager() {
    private fun check(chain: Array<out X509Certificate>) {
      val leaf = chain.firstOrNull() ?: throw CertificateException("no server certificate")
      if (!leaf.encoded.contentEquals(pinned)) throw CertificateException("the server certificate is not the pinned one")
    }

    override fun checkServerTrusted(chain: Array<out X509Certificate>, authType: String) = check(chain)

    override fun checkServerTrusted(chain: Array<out X509Certificate>, authType: String, socket: Socket?) = check(chain)

    override fun checkServerTrusted(chain: Array<out X509Certificate>, authType: String, engine: SSLEngine?) = check(chain)

    override fun checkClientTrusted(chain: Array<out X509Certificate>, authType: String) =
      throw CertificateException("client certificates are not used")

    override fun checkClientTrusted(chain: Array<out X509Certificate>, authType: String, socket: Socket?) =
      throw CertificateException("client certificates are not used")

    override fun checkClientTrusted(chain: Array<out X509Certificate>, authType: String, engine: SSLEngine?) =
      throw CertificateException("client certificates are not used")

    override fun getAcceptedIssuers(): Array<X509Certificate> = emptyArray()
  }

  private val ssl: QuicSslContext = QuicSslContextBuilder.forClient()
    .trustManager(pin)
    .applicationProtocols(QUIC_ALPN)
    .build()

  override fun open(url: String, listener: TransportListener): ChatwireTransport {
    val uri = URI(url)
    require(uri.scheme == "quic" && uri.host != null && uri.port > 0) { "not a quic://host:port URL: $url" }
    return QuicTransport(this, InetSocketAddress(uri.host, uri.port), listener)
  }

  internal fun connect(remote: InetSocketAddress, connection: ChannelInboundHandlerAdapter): Future<QuicChannel>? {
    val codec = QuicClientCodecBuilder()
      .sslContext(ssl)
      .maxIdleTimeout(idleTimeoutMs, TimeUnit.MILLISECONDS)
      .initialMaxData(1L shl 20)
      .initialMaxStreamDataBidirectionalLocal(512L shl 10)
      .initialMaxStreamDataBidirectionalRemote(512L shl 10)
      .initialMaxStreamsBidirectional(0)
      .initialMaxStreamsUnidirectional(0)
      .datagram(4096, 4096)
      .build()
    val bound: ChannelFuture = Bootstrap().group(group).channel(NioDatagramChannel::class.java).handler(codec).bind(0)
    val promise = group.next().newPromise<QuicChannel>()
    bound.addListener { f ->
      if (!f.isSuccess) {
        promise.tryFailure(f.cause())
        return@addListener
      }
      val udp: Channel = bound.channel()
      QuicChannel.newBootstrap(udp)
        .handler(connection)
        .streamHandler(ChannelInboundHandlerAdapter())
        .remoteAddress(remote)
        .connect()
        .addListener { q ->
          if (q.isSuccess) {
            val quic = q.now as QuicChannel
            quic.closeFuture().addListener { udp.close() }
            promise.trySuccess(quic)
          } else {
            udp.close()
            promise.tryFailure(q.cause())
          }
        }
    }
    return promise
  }

  override fun close() {
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS)
  }
}

/** One QUIC connection: the control stream (stream 0) plus datagrams. */
internal class QuicTransport(
  factory: QuicTransportFactory,
  remote: InetSocketAddress,
  private val listener: TransportListener,
) : ChatwireTransport {
  private val done = AtomicBoolean()
  @Volatile private var quic: QuicChannel? = null
  @Volatile private var stream: QuicStreamChannel? = null
  @Volatile private var closeCode = 1006
  @Volatile private var closeReason = "QUIC connection lost"
  private val pending = ByteArrayOutputStream()

  private val connection = object : ChannelInboundHandlerAdapter() {
    override fun userEventTriggered(ctx: ChannelHandlerContext, evt: Any) {
      if (evt is QuicConnectionCloseEvent) {
        // the application error code is the close code.
        closeCode = if (evt.isApplicationClose) evt.error() else 1006
        closeReason = String(evt.reason() ?: ByteArray(0), Charsets.UTF_8).ifEmpty { if (evt.isApplicationClose) "" else "QUIC transport error ${evt.error()}" }
      }
      ctx.fireUserEventTriggered(evt)
    }

    override fun channelRead(ctx: ChannelHandlerContext, msg: Any) {
      // A datagram: exactly one frame.
      val buf = msg as ByteBuf
      try {
        val bytes = ByteArray(buf.readableBytes()).also { buf.readBytes(it) }
        if (!done.get()) listener.message(this@QuicTransport, bytes)
      } finally {
        buf.release()
      }
    }

    override fun channelInactive(ctx: ChannelHandlerContext) {
      finish(closeCode, closeReason)
      ctx.fireChannelInactive()
    }
  }

  private val control = object : ChannelInboundHandlerAdapter() {
    override fun channelRead(ctx: ChannelHandlerContext, msg: Any) {
      val buf = msg as ByteBuf
      try {
        val bytes = ByteArray(buf.readableBytes()).also { buf.readBytes(it) }
        val whole = synchronized(pending) { takeWholeFrames(bytes) }
        if (whole == null) {
          close(4000, "undecodable frame prefix")
        } else if (whole.isNotEmpty() && !done.get()) {
          listener.message(this@QuicTransport, whole)
        }
      } finally {
        buf.release()
      }
    }
  }

  init {
    val future = factory.connect(remote, connection)
    future?.addListener { q ->
      if (!q.isSuccess) {
        finish(1006, "QUIC handshake failed: ${q.cause()}")
        return@addListener
      }
      val channel = q.now as QuicChannel
      quic = channel
      if (done.get()) {
        channel.close()
        return@addListener
      }
      channel.createStream(QuicStreamType.BIDIRECTIONAL, control).addListener { s ->
        if (s.isSuccess) {
          stream = s.now as QuicStreamChannel
          if (!done.get()) listener.opened(this)
        } else {
          close(1006, "no stream: ${s.cause()}")
        }
      }
    }
  }

  /** Appends `bytes` and returns the whole frames buffered so far (keeping the rest); null on a bad prefix. */
  private fun takeWholeFrames(bytes: ByteArray): ByteArray? {
    pending.write(bytes)
    val all = pending.toByteArray()
    var end = 0
    while (end < all.size) {
      val (length, next) = try {
        FrameCodec.decodeVarint(all, end)
      } catch (e: FrameDecodeException) {
        if (all.size - end >= 10) return null // not a prefix that more bytes could finish
        break
      }
      if (length > all.size - next) break
      end = next + length.toInt()
    }
    pending.reset()
    pending.write(all, end, all.size - end)
    return all.copyOf(end)
  }

  private fun finish(code: Int, reason: String) {
    if (!done.compareAndSet(false, true)) return
    listener.closed(this, code, reason)
  }

  override fun send(bytes: ByteArray): Boolean {
    val s = stream ?: return false
    if (done.get()) return false
    s.writeAndFlush(Unpooled.wrappedBuffer(bytes))
    return true
  }

  override fun sendDatagram(bytes: ByteArray): Boolean {
    val q = quic ?: return false
    if (done.get()) return false
    q.writeAndFlush(Unpooled.wrappedBuffer(bytes))
    return true
  }

  override fun close(code: Int, reason: String) {
    val q = quic
    if (q != null) {
      q.close(true, code, Unpooled.wrappedBuffer(reason.toByteArray(Charsets.UTF_8)))
    }
    finish(code, reason)
  }
}

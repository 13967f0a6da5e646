// Reconnect delays (docs/protocol.md ): full jitter, random(0, min(max, base * 2^attempt)).
package dev.chatwire.client

import kotlin.random.Random

/** Reconnect backoff: full jitter between 0 and a ceiling that doubles from [baseMs] to [maxMs]. */
public data class Backoff(
  /** The first ceiling, in ms. */
  val baseMs: Long = 1_000,
  /** The largest ceiling, in ms. */
  val maxMs: Long = 30_000,
) {
  /** The delay before reconnect attempt `attempt` (0-based), never below `floorMs`. */
  public fun delayMs(attempt: Int, floorMs: Long = 0, random: Random = Random.Default): Long {
    val ceiling = minOf(maxMs, baseMs shl minOf(attempt, 30).coerceAtLeast(0))
    val jittered = if (ceiling <= 0) 0 else random.nextLong(ceiling + 1)
    return maxOf(floorMs, jittered)
  }
}

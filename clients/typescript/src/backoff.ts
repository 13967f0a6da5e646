// Reconnect delays (docs/protocol.md ): full jitter, random(0, min(max, base * 2^attempt)).

/** Backoff settings. */
export interface BackoffOptions {
  /** The first ceiling, in ms (default 1000). */
  baseMs?: number;
  /** The largest ceiling, in ms (default 30000). */
  maxMs?: number;
}

/** The delay before reconnect attempt `attempt` (0-based), never below `floorMs`. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, floorMs = 0, random: () => number = Math.random): number {
  const base = options.baseMs ?? 1000;
  const max = options.maxMs ?? 30000;
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.max(floorMs, Math.floor(random() * ceiling));
}

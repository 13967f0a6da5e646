// Reconnect delays (docs/protocol.md ): full jitter, random(0, min(max, base * 2^attempt)).

import Foundation

/// Reconnect backoff settings.
public struct Backoff: Sendable, Equatable {
    /// The first ceiling, in seconds (default 1).
    public var base: TimeInterval
    /// The largest ceiling, in seconds (default 30).
    public var maximum: TimeInterval

    /// Backoff with full jitter between 0 and `min(maximum, base * 2^attempt)`.
    public init(base: TimeInterval = 1, maximum: TimeInterval = 30) {
        self.base = base
        self.maximum = maximum
    }

    /// The delay before reconnect attempt `attempt` (0-based), never below `floor`.
    /// `unit` returns a random number in [0, 1).
    public func delay(
        attempt: Int,
        floor: TimeInterval = 0,
        unit: () -> Double = { Double.random(in: 0..<1) }
    ) -> TimeInterval {
        let exponent = Double(min(max(attempt, 0), 30))
        let ceiling = min(maximum, base * pow(2, exponent))
        return max(floor, unit() * ceiling)
    }
}

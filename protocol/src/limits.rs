//! Default limits of protocol v1 (docs/protocol.md, "Limits"). Servers advertise the values in
//! force in `ConnectResponse.limits`; these are the defaults a server starts from.

/// Largest encoded `ClientFrame` a server accepts by default (64 KiB), length prefix excluded.
pub const DEFAULT_MAX_CLIENT_FRAME_BYTES: usize = 64 * 1024;

/// Largest encoded `ServerFrame` a server sends by default (1 MiB), length prefix excluded.
pub const DEFAULT_MAX_SERVER_FRAME_BYTES: usize = 1024 * 1024;

/// Largest encoded room event payload (message content and the like): 16 KiB. It also bounds
/// the size of storage partitions.
pub const MAX_EVENT_PAYLOAD_BYTES: usize = 16 * 1024;

/// Longest message text, in Unicode scalar values.
pub const DEFAULT_MAX_TEXT_CHARS: usize = 4000;

/// Largest app payload on a message.
pub const DEFAULT_MAX_APP_PAYLOAD_BYTES: usize = 4 * 1024;

/// Most requests a client may have in flight on one connection.
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS: usize = 64;

/// Largest History or Subscribe page.
pub const MAX_PAGE_SIZE: usize = 100;

/// The longest varint length prefix: 10 bytes encode any `u64`.
pub const MAX_LENGTH_PREFIX_BYTES: usize = 10;

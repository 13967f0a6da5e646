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

// ---------------------------------------------------------------------------------------------
// The reference server's defaults, one definition each. docs/protocol.md §21 and the
// configuration table of docs/operations.md state the same values, and
// server/tests/spec_tables.rs fails when they differ (and when a real server advertises
// anything else).

/// Largest encoded message `Content`: the event payload cap less 1 KiB for the other fields of
/// the `MessageCreated` event that carries it (sender, ids, reply and thread references).
pub const DEFAULT_MAX_CONTENT_BYTES: usize = MAX_EVENT_PAYLOAD_BYTES - 1024;

/// Most attachments on one message.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// Most mentions on one message.
pub const DEFAULT_MAX_MENTIONS: usize = 50;

/// Most users one session watches for presence.
pub const DEFAULT_MAX_PRESENCE_WATCH: usize = 200;

/// Most members of a group room.
pub const DEFAULT_MAX_GROUP_MEMBERS: usize = 10_000;

/// Sustained sends per user, per minute (advertised per second: 10).
pub const DEFAULT_SEND_RATE_PER_MINUTE: u32 = 600;

/// Largest burst of sends per user.
pub const DEFAULT_SEND_BURST: u32 = 30;

/// Sustained sends to one room (all members together), per minute (advertised per second: 50).
pub const DEFAULT_ROOM_SEND_RATE_PER_MINUTE: u32 = 3000;

/// Largest burst of sends to one room.
pub const DEFAULT_ROOM_SEND_BURST: u32 = 100;

/// Sustained contact requests per user, per minute (capability `contacts`, issue 22).
pub const DEFAULT_CONTACT_REQUESTS_PER_MINUTE: u32 = 20;

/// Largest burst of contact requests per user.
pub const DEFAULT_CONTACT_REQUESTS_BURST: u32 = 10;

/// How long a `client_msg_id` is remembered (24 h; the protocol's minimum).
pub const DEFAULT_IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3_600_000;

/// Shortest interval between two typing requests of a client for one room.
pub const DEFAULT_TYPING_THROTTLE_MS: u32 = 2000;

/// How long a typing indicator lives without a renewal.
pub const DEFAULT_TYPING_TTL_MS: u32 = 6000;

/// The heartbeat interval (advertised in `ConnectResponse.heartbeat_interval_ms`).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 15_000;

/// Time allowed between the transport opening and a complete `Connect`.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// `TokenExpiring` is sent when the token has this long or less left.
pub const TOKEN_EXPIRING_LEAD_MS: u64 = 60_000;

/// `Disconnect.reconnect_delay_ms` of a drain: at least this ...
pub const DRAIN_RECONNECT_DELAY_MIN_MS: u32 = 1000;

/// ... and below this, drawn uniformly per session (jitter across sessions, R-4.8.1).
pub const DRAIN_RECONNECT_DELAY_MAX_MS: u32 = 3000;

/// The `Limits` a server with every default advertises in `ConnectResponse`.
pub fn default_limits() -> crate::v1::Limits {
    let n = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
    crate::v1::Limits {
        max_client_frame_bytes: n(DEFAULT_MAX_CLIENT_FRAME_BYTES),
        max_server_frame_bytes: n(DEFAULT_MAX_SERVER_FRAME_BYTES),
        max_content_bytes: n(DEFAULT_MAX_CONTENT_BYTES),
        max_text_chars: n(DEFAULT_MAX_TEXT_CHARS),
        max_app_payload_bytes: n(DEFAULT_MAX_APP_PAYLOAD_BYTES),
        max_attachments: n(DEFAULT_MAX_ATTACHMENTS),
        max_mentions: n(DEFAULT_MAX_MENTIONS),
        max_in_flight_requests: n(DEFAULT_MAX_IN_FLIGHT_REQUESTS),
        max_page_size: n(MAX_PAGE_SIZE),
        max_presence_watch: n(DEFAULT_MAX_PRESENCE_WATCH),
        max_group_members: n(DEFAULT_MAX_GROUP_MEMBERS),
        send_rate_per_second: DEFAULT_SEND_RATE_PER_MINUTE.div_ceil(60),
        send_burst: DEFAULT_SEND_BURST,
        idempotency_window_s: u32::try_from(DEFAULT_IDEMPOTENCY_WINDOW_MS / 1000)
            .unwrap_or(u32::MAX),
        typing_throttle_ms: DEFAULT_TYPING_THROTTLE_MS,
        typing_ttl_ms: DEFAULT_TYPING_TTL_MS,
        room_send_rate_per_second: DEFAULT_ROOM_SEND_RATE_PER_MINUTE.div_ceil(60),
        room_send_burst: DEFAULT_ROOM_SEND_BURST,
        contact_requests_per_minute: DEFAULT_CONTACT_REQUESTS_PER_MINUTE,
        contact_requests_burst: DEFAULT_CONTACT_REQUESTS_BURST,
    }
}

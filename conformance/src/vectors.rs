//! Golden frames: one per request, reply and event type (filled in next).

//! Chat domain logic: rooms, messages, receipts, presence, typing and calls.

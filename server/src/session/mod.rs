//! The per-connection session state machine, shared by every transport.

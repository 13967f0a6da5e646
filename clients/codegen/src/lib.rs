//! `chatwire-codegen`: builds the typed SDK surfaces (one method per request, one typed event
//! stream, typed errors) for TypeScript, Kotlin and Swift from the protocol's descriptors.
//!
//! One shared walker over the `ChatwireService` declaration, one back end per language. The
//! generator arrives with the SDK issue; this crate fixes its place in the layout.

//! `chatwire-bench`: load generator for Chatwire servers and the peers it is compared with.
//! The binary (`src/main.rs`) drives a running server; results and the commands that produced
//! them live in `docs/benchmarks.md`.

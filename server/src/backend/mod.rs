//! Backend traits (room log, command pipeline, event queue, fan-out) and their implementations.

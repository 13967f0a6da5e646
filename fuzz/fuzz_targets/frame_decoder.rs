//! Fuzzes the frame decoder with arbitrary bytes fed in arbitrary chunks.
//!
//! Run: `cargo +nightly fuzz run frame_decoder` (from the repository root).
#![no_main]

use chatwire_protocol::{ClientFrameDecoder, ServerFrameDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the size limit and the chunk size; the rest is the stream.
    let (limit, chunk, stream) = match data {
        [a, b, rest @ ..] => (usize::from(*a) * 64, usize::from(*b).max(1), rest),
        _ => return,
    };
    let mut client = ClientFrameDecoder::new(limit);
    let mut server = ServerFrameDecoder::new(limit);
    for piece in stream.chunks(chunk) {
        client.push(piece);
        server.push(piece);
        while let Ok(Some(_)) = client.next_frame() {}
        while let Ok(Some(_)) = server.next_frame() {}
        assert!(client.buffered_len() <= stream.len());
    }
    let _ = client.finish();
    let _ = server.finish();
});

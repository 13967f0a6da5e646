//! Regenerates the Rust types and the descriptor set from the proto files and fails when the
//! checked-in copies differ. `CHATWIRE_REGEN=1` (what `scripts/regen` sets) writes them instead.

use std::path::{Path, PathBuf};

const FILES: &[&str] = &["chatwire/v1/frames.proto", "chatwire/v1/service.proto"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(out_dir: &Path) -> (Vec<u8>, String) {
    let proto_dir = crate_dir().join("proto");
    let mut compiler = protox::Compiler::new([&proto_dir]).expect("proto include path");
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(FILES).expect("proto files compile");
    let fds = compiler.file_descriptor_set();
    let fds_bytes = prost::Message::encode_to_vec(&fds);

    prost_build::Config::new()
        .out_dir(out_dir)
        .bytes(["."])
        .compile_fds(fds)
        .expect("prost-build generates");
    let rust = std::fs::read_to_string(out_dir.join("chatwire.v1.rs")).expect("generated file");
    (fds_bytes, rust)
}

#[test]
fn generated_code_matches_the_proto_files() {
    let tmp = std::env::temp_dir().join(format!("chatwire-bootstrap-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let (fds, rust) = generate(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);

    let gen_dir = crate_dir().join("src/gen");
    let rust_path = gen_dir.join("chatwire.v1.rs");
    let fds_path = gen_dir.join("chatwire.v1.fds.binpb");
    if std::env::var_os("CHATWIRE_REGEN").is_some() {
        std::fs::create_dir_all(&gen_dir).expect("gen dir");
        std::fs::write(&rust_path, &rust).expect("write generated rust");
        std::fs::write(&fds_path, &fds).expect("write descriptor set");
        return;
    }
    let checked_in_rust = std::fs::read_to_string(&rust_path).unwrap_or_default();
    let checked_in_fds = std::fs::read(&fds_path).unwrap_or_default();
    assert!(
        checked_in_rust == rust && checked_in_fds == fds,
        "protocol/src/gen is stale: run scripts/regen and commit the result"
    );
}

//! Golden output of every back end, and the check that the checked-in SDK files are what a
//! fresh regeneration writes. `CHATWIRE_REGEN=1` (what `scripts/regen` sets) writes both
//! instead of comparing.

use std::path::{Path, PathBuf};

use chatwire_codegen::{Conventions, backend, render_all, walk};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn regen() -> bool {
    std::env::var_os("CHATWIRE_REGEN").is_some()
}

fn mini_protocol() -> chatwire_codegen::Protocol {
    let dir = crate_dir().join("tests/fixtures/mini");
    let mut compiler = protox::Compiler::new([&dir]).expect("include path");
    compiler.include_source_info(true).include_imports(true);
    compiler
        .open_files(["chatwire/v1/mini.proto"])
        .expect("fixture compiles");
    let bytes = prost::Message::encode_to_vec(&compiler.file_descriptor_set());
    let pool = prost_reflect::DescriptorPool::decode(bytes.as_slice()).expect("pool");
    walk(&pool, &Conventions::chatwire_v1()).expect("fixture walks")
}

fn compare_or_write(path: &Path, contents: &str) {
    if regen() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        std::fs::write(path, contents).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        expected == contents,
        "{} differs from the back end's output: run scripts/regen and review the diff",
        path.display()
    );
}

#[test]
fn every_backend_matches_its_golden_output_for_the_fixture() {
    let protocol = mini_protocol();
    for b in backend::all() {
        for file in b.render(&protocol) {
            let golden = crate_dir()
                .join("tests/golden")
                .join(b.name())
                .join(&file.path);
            compare_or_write(&golden, &file.contents);
        }
    }
}

#[test]
fn checked_in_sdk_files_match_a_fresh_regeneration() {
    let protocol = chatwire_codegen::chatwire_v1().expect("chatwire.v1 walks");
    let root = crate_dir().join("../..");
    let files = render_all(&protocol);
    if regen() {
        chatwire_codegen::write_all(&root, &files).expect("write");
        return;
    }
    let stale = chatwire_codegen::check_all(&root, &files);
    assert!(
        stale.is_empty(),
        "stale generated files (run scripts/regen): {stale:?}"
    );
}

#[test]
fn the_walker_pairs_every_request_of_chatwire_v1() {
    let protocol = chatwire_codegen::chatwire_v1().expect("chatwire.v1 walks");
    assert_eq!(protocol.requests.len(), 45);
    let send = protocol
        .requests
        .iter()
        .find(|r| r.rpc == "Send")
        .expect("Send");
    assert_eq!((send.case.as_str(), send.number), ("send", 40));
    assert_eq!(send.request.name, "SendRequest");
    assert_eq!(send.response.file, "chatwire/v1/messages.proto");
    assert!(send.doc.contains("client_msg_id"));
    assert_eq!(protocol.events.len(), 15);
    assert_eq!(protocol.room_events.len(), 10);
    assert!(
        protocol
            .error_codes
            .values
            .iter()
            .any(|v| v.short == "NOT_FOUND")
    );
    assert!(protocol.close_codes.values.iter().any(|v| v.number == 4012));
}

#[test]
fn an_rpc_without_a_frame_case_fails_the_walk() {
    let dir = crate_dir().join("tests/fixtures/mini");
    let text = std::fs::read_to_string(dir.join("chatwire/v1/mini.proto")).expect("fixture");
    let broken = text.replace(
        "  rpc Send(SendRequest) returns (SendResponse);",
        "  rpc Send(SendRequest) returns (SendResponse);\n  rpc Edit(SendRequest) returns (SendResponse);",
    );
    let tmp = std::env::temp_dir().join(format!("chatwire-codegen-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("chatwire/v1")).expect("tmp");
    std::fs::write(tmp.join("chatwire/v1/mini.proto"), broken).expect("write");
    let fds = protox::compile(["chatwire/v1/mini.proto"], [&tmp]).expect("compiles");
    let _ = std::fs::remove_dir_all(&tmp);
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(fds).expect("pool");
    let err = walk(&pool, &Conventions::chatwire_v1()).expect_err("Edit has no frame case");
    assert!(err.to_string().contains("Edit"), "{err}");
}

#[test]
fn no_chatwire_v1_message_numbers_a_field_between_the_cases_of_a_oneof() {
    // The Swift back end encodes fields in field number order; prost (which wrote the golden
    // vectors) encodes a oneof at the position of its lowest case. The two agree, byte for
    // byte, as long as no other field is numbered between a oneof's lowest and highest case.
    let protocol = chatwire_codegen::chatwire_v1().expect("chatwire.v1 walks");
    assert!(protocol.messages.len() > 100, "every message is modelled");
    for m in &protocol.messages {
        for i in 0..m.oneofs.len() {
            let cases: Vec<u32> = m
                .fields
                .iter()
                .filter(|f| f.oneof == Some(i))
                .map(|f| f.number)
                .collect();
            let (low, high) = (cases.iter().min(), cases.iter().max());
            let (Some(low), Some(high)) = (low, high) else {
                continue;
            };
            for f in &m.fields {
                assert!(
                    f.oneof == Some(i) || f.number < *low || f.number > *high,
                    "{}.{} lies between the cases of oneof {}",
                    m.ty.name,
                    f.name,
                    m.oneofs[i].name
                );
            }
        }
    }
}

#[test]
fn swift_names_of_every_chatwire_v1_message_are_unambiguous() {
    // What a Swift compiler would reject or misread in the generated structs: two properties of
    // one name, a oneof enum (`Kind`) that shadows a type its own message's fields use, or a
    // property that hides a member of `ProtoMessage`.
    use chatwire_codegen::backend::swift::type_name;
    use chatwire_codegen::model::FieldType;
    use chatwire_codegen::names::{lower_camel, upper_camel};
    let protocol = chatwire_codegen::chatwire_v1().expect("chatwire.v1 walks");
    for m in &protocol.messages {
        let mut properties: Vec<String> = m
            .fields
            .iter()
            .filter(|f| f.oneof.is_none())
            .map(|f| lower_camel(&f.name))
            .chain(m.oneofs.iter().map(|o| lower_camel(&o.name)))
            .collect();
        let count = properties.len();
        properties.sort();
        properties.dedup();
        assert_eq!(properties.len(), count, "{}: duplicate property", m.ty.name);
        for p in &properties {
            assert!(
                !["with", "encode", "serializedBytes"].contains(&p.as_str()),
                "{}.{p} hides a ProtoMessage member",
                m.ty.name
            );
        }
        for o in &m.oneofs {
            let nested = upper_camel(&o.name);
            for f in &m.fields {
                if let FieldType::Enum(t) | FieldType::Message(t) = &f.ty {
                    assert_ne!(
                        type_name(t),
                        nested,
                        "{}.{}: its type is shadowed by the oneof enum",
                        m.ty.name,
                        f.name
                    );
                }
            }
            assert_ne!(
                nested,
                type_name(&m.ty),
                "{}: oneof named like it",
                m.ty.name
            );
        }
    }
}

#[test]
fn an_added_rpc_appears_in_the_kotlin_surface_by_regeneration_alone() {
    // The proto change a new request needs (messages, frame cases, rpc) and nothing else.
    let dir = crate_dir().join("tests/fixtures/mini");
    let text = std::fs::read_to_string(dir.join("chatwire/v1/mini.proto")).expect("fixture");
    let grown = text
        .replace(
            "    SendRequest send = 40;\n  }",
            "    SendRequest send = 40;\n    // Edits a message.\n    EditRequest edit = 41;\n  }",
        )
        .replace(
            "    SendResponse send = 40;\n  }",
            "    SendResponse send = 40;\n    EditResponse edit = 41;\n  }",
        )
        .replace(
            "  rpc Send(SendRequest) returns (SendResponse);",
            "  rpc Send(SendRequest) returns (SendResponse);\n  // Edits a message.\n  rpc Edit(EditRequest) returns (EditResponse);",
        )
        + "\n// Edits a message.\nmessage EditRequest {\n  uint64 seq = 1;\n}\n\n// The edit's seq.\nmessage EditResponse {\n  uint64 seq = 1;\n}\n";
    let tmp = std::env::temp_dir().join(format!("chatwire-codegen-kt-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("chatwire/v1")).expect("tmp");
    std::fs::write(tmp.join("chatwire/v1/mini.proto"), grown).expect("write");
    let mut compiler = protox::Compiler::new([&tmp]).expect("include path");
    compiler.include_source_info(true).include_imports(true);
    compiler
        .open_files(["chatwire/v1/mini.proto"])
        .expect("grown fixture compiles");
    let bytes = prost::Message::encode_to_vec(&compiler.file_descriptor_set());
    let _ = std::fs::remove_dir_all(&tmp);
    let pool = prost_reflect::DescriptorPool::decode(bytes.as_slice()).expect("pool");
    let protocol = walk(&pool, &Conventions::chatwire_v1()).expect("grown fixture walks");
    let kotlin = backend::all()
        .into_iter()
        .find(|b| b.name() == "kotlin")
        .expect("kotlin back end");
    let api = kotlin.render(&protocol).remove(0).contents;
    assert!(
        api.contains("  public suspend fun edit(\n    request: chatwire.v1.EditRequest = chatwire.v1.EditRequest(),"),
        "{api}"
    );
    assert!(api.contains("  ): chatwire.v1.EditResponse {"), "{api}");
    assert!(api.contains("  EDIT(\"Edit\", \"edit\", 41),"), "{api}");
    assert!(api.contains("return reply.edit ?: throw unexpectedReply(RequestKind.EDIT, reply)"));
}

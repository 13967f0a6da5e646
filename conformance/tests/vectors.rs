//! The golden vectors on disk against the generator and the Rust codec. With `CHATWIRE_REGEN`
//! set, `vectors_on_disk_match_the_generator` rewrites them instead (`scripts/regen`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::BytesMut;
use chatwire_conformance::vectors::{self, Frame, Vector};
use chatwire_protocol::v1::{ClientFrame, ServerFrame};
use chatwire_protocol::{FrameDecoder, encode_frame, limits::DEFAULT_MAX_SERVER_FRAME_BYTES};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

/// The oneofs every one of whose cases a vector must show.
const COVERED_ONEOFS: [&str; 6] = [
    "chatwire.v1.ClientFrame.request",
    "chatwire.v1.Reply.result",
    "chatwire.v1.ServerFrame.frame",
    "chatwire.v1.Event.kind",
    "chatwire.v1.RoomEvent.kind",
    "chatwire.v1.CallSignal.kind",
];

const REGEN_HINT: &str = "the golden vectors are stale: run scripts/regen";

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// The `.bin` and `.json` files under `dir`, relative to it, with `/` separators.
fn vector_files(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("read a vectors directory") {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|ext| ext.to_str()),
                Some("bin" | "json")
            ) {
                let relative = path.strip_prefix(dir).expect("path under the vectors dir");
                found.insert(slash_path(relative));
            }
        }
    }
    found
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// With `CHATWIRE_REGEN` set, rewrites the vectors once per test run, before any test reads
/// them (tests run in parallel). Returns the rendered files.
fn rendered_files() -> &'static [(PathBuf, Vec<u8>)] {
    static FILES: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let files = vectors::render(&vectors::all());
        if std::env::var_os("CHATWIRE_REGEN").is_some() {
            regenerate(&vectors_dir(), &files);
        }
        files
    })
}

fn read_vector_file(name: &str) -> Vec<u8> {
    rendered_files();
    let path = vectors_dir().join(name);
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}; {REGEN_HINT}", path.display()))
}

fn regenerate(dir: &Path, files: &[(PathBuf, Vec<u8>)]) {
    for stale in vector_files(dir) {
        fs::remove_file(dir.join(&stale)).expect("remove an old vector file");
    }
    remove_empty_dirs(dir);
    for (path, bytes) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().expect("vector files live in a directory"))
            .expect("create a vectors directory");
        fs::write(&path, bytes).expect("write a vector file");
    }
}

fn remove_empty_dirs(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read a vectors directory") {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            remove_empty_dirs(&path);
            // Fails, harmlessly, when something other than vectors is left inside.
            let _ = fs::remove_dir(&path);
        }
    }
}

#[test]
fn vectors_on_disk_match_the_generator() {
    let dir = vectors_dir();
    let files = rendered_files();
    let mut stale = Vec::new();
    for (path, bytes) in files {
        match fs::read(dir.join(path)) {
            Ok(on_disk) if on_disk == *bytes => {}
            Ok(_) => stale.push(format!("differs: {}", slash_path(path))),
            Err(_) => stale.push(format!("missing: {}", slash_path(path))),
        }
    }
    let rendered: BTreeSet<String> = files.iter().map(|(path, _)| slash_path(path)).collect();
    for extra in vector_files(&dir).difference(&rendered) {
        stale.push(format!("not generated: {extra}"));
    }
    assert!(stale.is_empty(), "{REGEN_HINT}:\n  {}", stale.join("\n  "));
}

fn decode_framed<M: Message + Default>(bytes: &[u8]) -> M {
    let mut decoder = FrameDecoder::<M>::new(DEFAULT_MAX_SERVER_FRAME_BYTES);
    decoder.push(bytes);
    let frame = decoder
        .next_frame()
        .expect("a golden frame decodes")
        .expect("a golden file holds a whole frame");
    assert!(
        matches!(decoder.next_frame(), Ok(None)),
        "one frame per golden file"
    );
    decoder.finish().expect("no bytes after the frame");
    frame
}

fn reencode<M: Message>(message: &M) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(message, DEFAULT_MAX_SERVER_FRAME_BYTES, &mut out).expect("re-encode");
    out.to_vec()
}

#[test]
fn binary_vectors_decode_to_their_frames() {
    for vector in vectors::all() {
        let bytes = read_vector_file(&format!("{}.bin", vector.name));
        let (decoded, reencoded) = match &vector.frame {
            Frame::Client(_) => {
                let frame = decode_framed::<ClientFrame>(&bytes);
                let reencoded = reencode(&frame);
                (Frame::Client(frame), reencoded)
            }
            Frame::Server(_) => {
                let frame = decode_framed::<ServerFrame>(&bytes);
                let reencoded = reencode(&frame);
                (Frame::Server(frame), reencoded)
            }
        };
        assert_eq!(
            decoded, vector.frame,
            "{}.bin decodes to another frame",
            vector.name
        );
        assert_eq!(
            reencoded, bytes,
            "{}.bin does not re-encode to itself",
            vector.name
        );
    }
}

/// The message bytes of a framed `.bin`: the input after its varint length prefix.
fn strip_prefix(framed: &[u8]) -> &[u8] {
    let mut rest = framed;
    let len = prost::decode_length_delimiter(&mut rest).expect("a varint length prefix");
    assert_eq!(rest.len(), len, "the prefix gives the message length");
    rest
}

fn message_descriptor(pool: &DescriptorPool, vector: &Vector) -> MessageDescriptor {
    pool.get_message_by_name(vector.frame.message_name())
        .expect("the frame message is in the descriptor set")
}

#[test]
fn json_vectors_round_trip_through_the_descriptor() {
    let pool = vectors::descriptor_pool();
    for vector in vectors::all() {
        let json = read_vector_file(&format!("{}.json", vector.name));
        let bin = read_vector_file(&format!("{}.bin", vector.name));
        let mut deserializer = serde_json::Deserializer::from_slice(&json);
        let message =
            DynamicMessage::deserialize(message_descriptor(&pool, &vector), &mut deserializer)
                .unwrap_or_else(|err| panic!("{}.json does not parse: {err}", vector.name));
        deserializer.end().expect("nothing after the JSON message");
        assert_eq!(
            message.encode_to_vec(),
            strip_prefix(&bin),
            "{}.json and {}.bin hold different messages",
            vector.name,
            vector.name,
        );
    }
}

/// Records, for each oneof of `COVERED_ONEOFS` set in `message` or below, the case that is set.
fn collect_cases(message: &DynamicMessage, cases: &mut BTreeMap<String, BTreeSet<String>>) {
    for (field, value) in message.fields() {
        if let Some(oneof) = field.containing_oneof()
            && COVERED_ONEOFS.contains(&oneof.full_name())
        {
            cases
                .entry(oneof.full_name().to_owned())
                .or_default()
                .insert(field.name().to_owned());
        }
        let nested: Vec<&DynamicMessage> = match value {
            Value::Message(inner) => vec![inner],
            Value::List(items) => items.iter().filter_map(Value::as_message).collect(),
            _ => Vec::new(),
        };
        for inner in nested {
            collect_cases(inner, cases);
        }
    }
}

#[test]
fn vectors_cover_every_oneof_case() {
    let pool = vectors::descriptor_pool();
    let mut cases = BTreeMap::new();
    for vector in vectors::all() {
        collect_cases(&vector.frame.to_dynamic(&pool), &mut cases);
    }
    let mut missing = Vec::new();
    for oneof_name in COVERED_ONEOFS {
        let (message_name, oneof) = oneof_name.rsplit_once('.').expect("Message.oneof");
        let message = pool
            .get_message_by_name(message_name)
            .expect("the oneof's message");
        let oneof = message
            .oneofs()
            .find(|candidate| candidate.name() == oneof)
            .unwrap_or_else(|| panic!("{oneof_name} is not in the descriptor set"));
        let covered = cases.get(oneof_name);
        for field in oneof.fields() {
            if !covered.is_some_and(|names| names.contains(field.name())) {
                missing.push(format!("{oneof_name}.{}", field.name()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no golden vector for: {}",
        missing.join(", ")
    );
}

/// `CreateGroup` -> `create_group`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (index, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if index > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

fn oneof_fields(
    pool: &DescriptorPool,
    message: &str,
    oneof: &str,
) -> BTreeMap<String, (u32, String)> {
    let message = pool.get_message_by_name(message).expect("frame message");
    let oneof = message
        .oneofs()
        .find(|candidate| candidate.name() == oneof)
        .expect("frame oneof");
    oneof
        .fields()
        .map(|field| {
            let type_name = field
                .kind()
                .as_message()
                .map(|message| message.full_name().to_owned())
                .unwrap_or_else(|| format!("{:?}", field.kind()));
            (field.name().to_owned(), (field.number(), type_name))
        })
        .collect()
}

#[test]
fn service_matches_frame_oneofs() {
    let pool = vectors::descriptor_pool();
    let service = pool
        .get_service_by_name("chatwire.v1.ChatwireService")
        .expect("the service is declared");
    let mut requests = oneof_fields(&pool, "chatwire.v1.ClientFrame", "request");
    let mut results = oneof_fields(&pool, "chatwire.v1.Reply", "result");
    assert!(
        results.remove("error").is_some(),
        "Reply.result has an error case"
    );
    let mut problems = Vec::new();
    for method in service.methods() {
        let field = snake_case(method.name());
        let input = method.input().full_name().to_owned();
        let output = method.output().full_name().to_owned();
        let expected_input = format!("chatwire.v1.{}Request", method.name());
        let expected_output = format!("chatwire.v1.{}Response", method.name());
        if input != expected_input || output != expected_output {
            problems.push(format!(
                "rpc {} takes {input} and returns {output}, expected {expected_input} -> \
                 {expected_output}",
                method.name()
            ));
        }
        match (requests.remove(&field), results.remove(&field)) {
            (Some((request_number, request_type)), Some((result_number, result_type))) => {
                if request_type != input {
                    problems.push(format!(
                        "ClientFrame.request.{field} is {request_type}, not {input}"
                    ));
                }
                if result_type != output {
                    problems.push(format!(
                        "Reply.result.{field} is {result_type}, not {output}"
                    ));
                }
                if request_number != result_number {
                    problems.push(format!(
                        "{field} is field {request_number} of ClientFrame.request but \
                         {result_number} of Reply.result"
                    ));
                }
            }
            (request, result) => {
                if request.is_none() {
                    problems.push(format!(
                        "rpc {} has no ClientFrame.request.{field}",
                        method.name()
                    ));
                }
                if result.is_none() {
                    problems.push(format!("rpc {} has no Reply.result.{field}", method.name()));
                }
            }
        }
    }
    for field in requests.keys() {
        problems.push(format!(
            "ClientFrame.request.{field} has no rpc in ChatwireService"
        ));
    }
    for field in results.keys() {
        problems.push(format!(
            "Reply.result.{field} has no rpc in ChatwireService"
        ));
    }
    assert!(
        problems.is_empty(),
        "service and frames disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// Event and room event cases are named after their message types, so generators can derive
/// one from the other (Event.receipts_changed holds a ReceiptsChanged).
#[test]
fn event_cases_are_named_after_their_types() {
    let pool = vectors::descriptor_pool();
    let mut problems = Vec::new();
    for (message, oneof) in [
        ("chatwire.v1.Event", "kind"),
        ("chatwire.v1.RoomEvent", "kind"),
    ] {
        for (field, (_, type_name)) in oneof_fields(&pool, message, oneof) {
            let short = type_name.rsplit('.').next().unwrap_or_default();
            // RoomEvent sits in Event.room: the one case named for the log rather than its type.
            if snake_case(short) != field && !(field == "room" && short == "RoomEvent") {
                problems.push(format!("{message}.{oneof}.{field} holds {short}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "misnamed cases:\n  {}",
        problems.join("\n  ")
    );
}

/// Records every enum value set in `message` or below, as (enum full name, number).
fn collect_enum_values(message: &DynamicMessage, seen: &mut BTreeSet<(String, i32)>) {
    for (field, value) in message.fields() {
        let enum_name = field.kind().as_enum().map(|e| e.full_name().to_owned());
        let items: Vec<&Value> = match value {
            Value::List(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            match (item, &enum_name) {
                (Value::EnumNumber(number), Some(name)) => {
                    seen.insert((name.clone(), *number));
                }
                (Value::Message(inner), _) => collect_enum_values(inner, seen),
                _ => {}
            }
        }
    }
}

/// Every value of every enum of the protocol (but the zero value, which proto3 leaves off the
/// wire) appears in some vector, so SDKs test their mapping of each name and number.
#[test]
fn vectors_show_every_enum_value() {
    let pool = vectors::descriptor_pool();
    let mut seen = BTreeSet::new();
    for vector in vectors::all() {
        collect_enum_values(&vector.frame.to_dynamic(&pool), &mut seen);
    }
    let mut missing = Vec::new();
    for enumeration in pool.all_enums() {
        if !enumeration.full_name().starts_with("chatwire.v1.") {
            continue;
        }
        for value in enumeration.values() {
            let key = (enumeration.full_name().to_owned(), value.number());
            if value.number() != 0 && !seen.contains(&key) {
                missing.push(value.name().to_owned());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no golden vector shows: {}",
        missing.join(", ")
    );
}

/// Unknown fields are skipped and unknown oneof cases leave the oneof unset: the `.bin` decodes
/// to the known fields, which the `.json` holds, and holds more than they encode to.
#[test]
fn decode_only_vectors_decode_to_their_known_fields() {
    let pool = vectors::descriptor_pool();
    let decode_only = vectors::decode_only();
    assert!(!decode_only.is_empty());
    for vector in decode_only {
        let bytes = read_vector_file(&format!("{}.bin", vector.name));
        let decoded = match &vector.frame {
            Frame::Client(_) => Frame::Client(decode_framed::<ClientFrame>(&bytes)),
            Frame::Server(_) => Frame::Server(decode_framed::<ServerFrame>(&bytes)),
        };
        assert_eq!(
            decoded, vector.frame,
            "{}.bin decodes to another frame",
            vector.name
        );
        assert_ne!(
            vector.frame.encode_framed(),
            bytes,
            "{}.bin must hold more than its known fields",
            vector.name
        );
        let json = read_vector_file(&format!("{}.json", vector.name));
        let descriptor = pool
            .get_message_by_name(vector.frame.message_name())
            .expect("frame message");
        let mut deserializer = serde_json::Deserializer::from_slice(&json);
        let message = DynamicMessage::deserialize(descriptor, &mut deserializer)
            .unwrap_or_else(|err| panic!("{}.json does not parse: {err}", vector.name));
        assert_eq!(message.encode_to_vec(), vector.frame.encode_message());
    }
}

fn send_content(name: &str) -> chatwire_protocol::v1::Content {
    let vector = vectors::all()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    match vector.frame {
        Frame::Client(ClientFrame {
            request: Some(chatwire_protocol::v1::client_frame::Request::Send(send)),
            ..
        }) => send.content.expect("content"),
        other => panic!("{name} is not a Send: {other:?}"),
    }
}

/// The maximum-size vectors sit exactly at the default limits of docs/protocol.md.
#[test]
fn edge_vectors_sit_at_the_limits() {
    use chatwire_protocol::limits;
    let text = send_content("client/edge/max_text").text;
    assert_eq!(text.chars().count(), limits::DEFAULT_MAX_TEXT_CHARS);
    assert!(
        text.len() > limits::DEFAULT_MAX_TEXT_CHARS,
        "multi-byte characters"
    );
    let payload = send_content("client/edge/max_app_payload").app_payload;
    assert_eq!(payload.len(), limits::DEFAULT_MAX_APP_PAYLOAD_BYTES);
    let bin = read_vector_file("client/edge/frame_at_limit.bin");
    assert_eq!(
        strip_prefix(&bin).len(),
        limits::DEFAULT_MAX_CLIENT_FRAME_BYTES
    );
    let mut decoder =
        chatwire_protocol::ClientFrameDecoder::new(limits::DEFAULT_MAX_CLIENT_FRAME_BYTES);
    decoder.push(&bin);
    assert!(
        matches!(decoder.next_frame(), Ok(Some(_))),
        "a frame at the limit is accepted"
    );
}

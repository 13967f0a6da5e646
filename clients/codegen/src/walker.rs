//! The shared walker: descriptors in, [`Protocol`] out.
//!
//! It pairs every rpc of the service with the `ClientFrame.request` case and the
//! `Reply.result` case of the same name (the proto's own convention, `Send` <-> `send`), and
//! checks both directions, so a request added to one place and not the other fails generation
//! rather than producing an SDK method that can never be answered.

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, OneofDescriptor,
};

use crate::model::{
    EnumModel, EnumValue, EventCase, FieldModel, FieldType, MessageModel, OneofModel, Protocol,
    RequestPair, Scalar, TypeRef,
};

/// Why the descriptors do not describe a protocol the back ends can render.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The descriptor set did not decode.
    #[error("descriptor set: {0}")]
    Descriptor(#[from] prost_reflect::DescriptorError),
    /// A message, enum or service the conventions name is missing.
    #[error("{0} is not declared")]
    Missing(String),
    /// A oneof the conventions name is missing from its message.
    #[error("{message} has no oneof `{oneof}`")]
    MissingOneof {
        /// The message.
        message: String,
        /// The oneof.
        oneof: String,
    },
    /// An rpc and the frame oneofs disagree.
    #[error("rpc {rpc}: {reason}")]
    Unpaired {
        /// The rpc (or oneof case) concerned.
        rpc: String,
        /// What does not match.
        reason: String,
    },
    /// A oneof case that should carry a message carries a scalar.
    #[error("{0} must carry a message")]
    NotAMessage(String),
    /// A field uses a proto feature the back ends do not render (maps, groups).
    #[error("{0}: {1} fields are not supported")]
    Unsupported(String, &'static str),
}

/// The names the walker looks for. [`Conventions::chatwire_v1`] is the protocol's own.
#[derive(Debug, Clone)]
pub struct Conventions {
    /// The proto package.
    pub package: String,
    /// The service listing every request -> reply pair.
    pub service: String,
    /// Client frame message and its request oneof.
    pub client_frame: (String, String),
    /// Server frame message.
    pub server_frame: String,
    /// Reply message and its result oneof.
    pub reply: (String, String),
    /// The error message carried by `Reply.result.error`.
    pub error: String,
    /// User-stream event message and its oneof.
    pub event: (String, String),
    /// Room event message and its oneof.
    pub room_event: (String, String),
    /// The error code enum.
    pub error_code: String,
    /// The close code enum.
    pub close_code: String,
}

impl Conventions {
    /// The conventions of `chatwire.v1`.
    pub fn chatwire_v1() -> Self {
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        Self {
            package: "chatwire.v1".into(),
            service: "ChatwireService".into(),
            client_frame: pair("ClientFrame", "request"),
            server_frame: "ServerFrame".into(),
            reply: pair("Reply", "result"),
            error: "Error".into(),
            event: pair("Event", "kind"),
            room_event: pair("RoomEvent", "kind"),
            error_code: "ErrorCode".into(),
            close_code: "CloseCode".into(),
        }
    }

    fn full(&self, name: &str) -> String {
        format!("{}.{name}", self.package)
    }
}

/// Walks an encoded `FileDescriptorSet` (with source info, for comments).
pub fn walk_descriptor_set(bytes: &[u8], conv: &Conventions) -> Result<Protocol, WalkError> {
    let pool = DescriptorPool::decode(bytes)?;
    walk(&pool, conv)
}

/// Walks a descriptor pool.
pub fn walk(pool: &DescriptorPool, conv: &Conventions) -> Result<Protocol, WalkError> {
    let message = |name: &str| {
        pool.get_message_by_name(&conv.full(name))
            .ok_or_else(|| WalkError::Missing(conv.full(name)))
    };
    let client_frame = message(&conv.client_frame.0)?;
    let reply = message(&conv.reply.0)?;
    let error = message(&conv.error)?;
    let requests = pair_requests(pool, conv, &client_frame, &reply)?;
    let events = event_cases(&message(&conv.event.0)?, &conv.event.1)?;
    let room_events = event_cases(&message(&conv.room_event.0)?, &conv.room_event.1)?;
    let enum_by_name = |name: &str| {
        pool.get_enum_by_name(&conv.full(name))
            .map(|e| enum_model(&e))
            .ok_or_else(|| WalkError::Missing(conv.full(name)))
    };
    let error_codes = enum_by_name(&conv.error_code)?;
    let close_codes = enum_by_name(&conv.close_code)?;
    let mut enums: Vec<EnumModel> = pool
        .all_enums()
        .filter(|e| e.package_name() == conv.package)
        .filter(|e| e.name() != conv.error_code && e.name() != conv.close_code)
        .map(|e| enum_model(&e))
        .collect();
    enums.sort_by(|a, b| a.ty.full_name.cmp(&b.ty.full_name));
    let mut messages = pool
        .all_messages()
        .filter(|m| m.package_name() == conv.package)
        .map(|m| message_model(&m))
        .collect::<Result<Vec<_>, _>>()?;
    messages.sort_by(|a, b| a.ty.full_name.cmp(&b.ty.full_name));
    Ok(Protocol {
        package: conv.package.clone(),
        service: conv.service.clone(),
        client_frame: type_ref_message(&client_frame),
        server_frame: type_ref_message(&message(&conv.server_frame)?),
        requests,
        error: type_ref_message(&error),
        events,
        room_events,
        error_codes,
        close_codes,
        enums,
        messages,
    })
}

fn message_model(m: &MessageDescriptor) -> Result<MessageModel, WalkError> {
    let oneofs: Vec<OneofDescriptor> = m.oneofs().filter(|o| !o.is_synthetic()).collect();
    let fields = m
        .fields()
        .map(|f| {
            if f.is_map() {
                return Err(WalkError::Unsupported(f.full_name().to_owned(), "map"));
            }
            if f.is_group() {
                return Err(WalkError::Unsupported(f.full_name().to_owned(), "group"));
            }
            let ty = match f.kind() {
                Kind::Message(inner) => FieldType::Message(type_ref_message(&inner)),
                Kind::Enum(e) => FieldType::Enum(type_ref_enum(&e)),
                Kind::Bool => FieldType::Scalar(Scalar::Bool),
                Kind::Int32 => FieldType::Scalar(Scalar::Int32),
                Kind::Sint32 => FieldType::Scalar(Scalar::Sint32),
                Kind::Sfixed32 => FieldType::Scalar(Scalar::Sfixed32),
                Kind::Uint32 => FieldType::Scalar(Scalar::Uint32),
                Kind::Fixed32 => FieldType::Scalar(Scalar::Fixed32),
                Kind::Int64 => FieldType::Scalar(Scalar::Int64),
                Kind::Sint64 => FieldType::Scalar(Scalar::Sint64),
                Kind::Sfixed64 => FieldType::Scalar(Scalar::Sfixed64),
                Kind::Uint64 => FieldType::Scalar(Scalar::Uint64),
                Kind::Fixed64 => FieldType::Scalar(Scalar::Fixed64),
                Kind::Float => FieldType::Scalar(Scalar::Float),
                Kind::Double => FieldType::Scalar(Scalar::Double),
                Kind::String => FieldType::Scalar(Scalar::String),
                Kind::Bytes => FieldType::Scalar(Scalar::Bytes),
            };
            let real_oneof = f.containing_oneof().filter(|o| !o.is_synthetic());
            Ok(FieldModel {
                name: f.name().to_owned(),
                json_name: f.json_name().to_owned(),
                number: f.number(),
                ty,
                repeated: f.is_list(),
                optional: f.containing_oneof().is_some_and(|o| o.is_synthetic()),
                oneof: real_oneof.and_then(|o| oneofs.iter().position(|x| x.name() == o.name())),
                doc: comment(f.parent_file().file_descriptor_proto(), f.path()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MessageModel {
        ty: type_ref_message(m),
        fields,
        oneofs: oneofs
            .iter()
            .map(|o| OneofModel {
                name: o.name().to_owned(),
                doc: comment(o.parent_file().file_descriptor_proto(), o.path()),
            })
            .collect(),
        doc: comment(m.parent_file().file_descriptor_proto(), m.path()),
    })
}

fn type_ref_enum(e: &EnumDescriptor) -> TypeRef {
    TypeRef {
        full_name: e.full_name().to_owned(),
        name: e.name().to_owned(),
        file: e.parent_file().name().to_owned(),
    }
}

fn pair_requests(
    pool: &DescriptorPool,
    conv: &Conventions,
    client_frame: &MessageDescriptor,
    reply: &MessageDescriptor,
) -> Result<Vec<RequestPair>, WalkError> {
    let service = pool
        .get_service_by_name(&conv.full(&conv.service))
        .ok_or_else(|| WalkError::Missing(conv.full(&conv.service)))?;
    let request_oneof = oneof(client_frame, &conv.client_frame.1)?;
    let result_oneof = oneof(reply, &conv.reply.1)?;
    let mut pairs = Vec::new();
    for method in service.methods() {
        let case = snake_case(method.name());
        let unpaired = |reason: String| WalkError::Unpaired {
            rpc: method.name().to_owned(),
            reason,
        };
        let req_field = case_field(&request_oneof, &case)
            .ok_or_else(|| unpaired(format!("no {}.{case}", client_frame.name())))?;
        let res_field = case_field(&result_oneof, &case)
            .ok_or_else(|| unpaired(format!("no {}.{case}", reply.name())))?;
        if message_of(&req_field)?.full_name() != method.input().full_name() {
            return Err(unpaired(format!(
                "{}.{case} carries another type",
                client_frame.name()
            )));
        }
        if message_of(&res_field)?.full_name() != method.output().full_name() {
            return Err(unpaired(format!(
                "{}.{case} carries another type",
                reply.name()
            )));
        }
        if req_field.number() != res_field.number() {
            return Err(unpaired("request and result field numbers differ".into()));
        }
        let doc = comment(method.parent_file().file_descriptor_proto(), method.path());
        pairs.push(RequestPair {
            rpc: method.name().to_owned(),
            case,
            number: req_field.number(),
            request: type_ref_message(&method.input()),
            response: type_ref_message(&method.output()),
            doc,
        });
    }
    for field in request_oneof.fields() {
        if !pairs.iter().any(|p| p.case == field.name()) {
            return Err(WalkError::Unpaired {
                rpc: field.name().to_owned(),
                reason: format!("{}.{} has no rpc", client_frame.name(), field.name()),
            });
        }
    }
    Ok(pairs)
}

fn event_cases(message: &MessageDescriptor, name: &str) -> Result<Vec<EventCase>, WalkError> {
    oneof(message, name)?
        .fields()
        .map(|field| {
            Ok(EventCase {
                case: field.name().to_owned(),
                number: field.number(),
                message: type_ref_message(&message_of(&field)?),
                doc: comment(field.parent_file().file_descriptor_proto(), field.path()),
            })
        })
        .collect()
}

fn enum_model(e: &EnumDescriptor) -> EnumModel {
    let prefix = format!("{}_", screaming_snake(e.name()));
    let values = e
        .values()
        .map(|v| EnumValue {
            name: v.name().to_owned(),
            short: v
                .name()
                .strip_prefix(&prefix)
                .unwrap_or(v.name())
                .to_owned(),
            number: v.number(),
            doc: comment(v.parent_file().file_descriptor_proto(), v.path()),
        })
        .collect();
    EnumModel {
        ty: TypeRef {
            full_name: e.full_name().to_owned(),
            name: e.name().to_owned(),
            file: e.parent_file().name().to_owned(),
        },
        prefix,
        values,
        doc: comment(e.parent_file_descriptor_proto(), e.path()),
    }
}

fn oneof(message: &MessageDescriptor, name: &str) -> Result<OneofDescriptor, WalkError> {
    message
        .oneofs()
        .find(|o| o.name() == name)
        .ok_or_else(|| WalkError::MissingOneof {
            message: message.full_name().to_owned(),
            oneof: name.to_owned(),
        })
}

fn case_field(oneof: &OneofDescriptor, case: &str) -> Option<FieldDescriptor> {
    oneof.fields().find(|f| f.name() == case)
}

fn message_of(field: &FieldDescriptor) -> Result<MessageDescriptor, WalkError> {
    match field.kind() {
        Kind::Message(m) => Ok(m),
        _ => Err(WalkError::NotAMessage(field.full_name().to_owned())),
    }
}

fn type_ref_message(m: &MessageDescriptor) -> TypeRef {
    TypeRef {
        full_name: m.full_name().to_owned(),
        name: m.name().to_owned(),
        file: m.parent_file().name().to_owned(),
    }
}

/// The leading comment of the element at `path`, each line trimmed, blank lines dropped.
fn comment(file: &prost_reflect::prost_types::FileDescriptorProto, path: &[i32]) -> String {
    let Some(info) = &file.source_code_info else {
        return String::new();
    };
    info.location
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// `CreateGroup` -> `create_group`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `ErrorCode` -> `ERROR_CODE`.
fn screaming_snake(name: &str) -> String {
    snake_case(name).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake() {
        assert_eq!(snake_case("CreateGroup"), "create_group");
        assert_eq!(screaming_snake("ErrorCode"), "ERROR_CODE");
    }
}

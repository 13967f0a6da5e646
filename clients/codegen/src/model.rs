//! The language-neutral model of the protocol that every back end renders.
//!
//! The walker ([`crate::walker`]) fills it from the descriptors; back ends only read it. Names
//! are kept as the proto spells them (`CreateGroup`, `create_group`, `ERROR_CODE_NOT_FOUND`):
//! each back end applies its own casing with [`crate::names`].

/// A proto message or enum a back end refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRef {
    /// The fully qualified name, `chatwire.v1.SendRequest`.
    pub full_name: String,
    /// The short name, `SendRequest`.
    pub name: String,
    /// The proto file that declares it, `chatwire/v1/messages.proto`.
    pub file: String,
}

/// One request with its reply: an rpc of the service, the `ClientFrame` oneof case that carries
/// the request and the `Reply` oneof case that carries the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPair {
    /// The rpc name, `CreateGroup`.
    pub rpc: String,
    /// The oneof case name shared by the request and the reply, `create_group`.
    pub case: String,
    /// The field number of both oneof cases.
    pub number: u32,
    /// The request message.
    pub request: TypeRef,
    /// The reply message.
    pub response: TypeRef,
    /// The rpc's leading comment, trimmed (one paragraph per line).
    pub doc: String,
}

/// One case of an event oneof (`Event.kind` or `RoomEvent.kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCase {
    /// The oneof case name, `typing_changed`.
    pub case: String,
    /// The field number.
    pub number: u32,
    /// The message it carries.
    pub message: TypeRef,
    /// The field's leading comment.
    pub doc: String,
}

/// An enum the SDKs expose by name (error codes, close codes, roles, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumModel {
    /// The enum type.
    pub ty: TypeRef,
    /// The common value prefix, `ERROR_CODE_`.
    pub prefix: String,
    /// Its values in declaration order.
    pub values: Vec<EnumValue>,
    /// The enum's leading comment.
    pub doc: String,
}

/// One value of an [`EnumModel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumValue {
    /// The full proto name, `ERROR_CODE_NOT_FOUND`.
    pub name: String,
    /// The name without the enum prefix, `NOT_FOUND`.
    pub short: String,
    /// The number.
    pub number: i32,
    /// The value's leading comment.
    pub doc: String,
}

/// Everything a back end needs: the protocol as requests, events and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// The proto package, `chatwire.v1`.
    pub package: String,
    /// The service the requests come from, `ChatwireService`.
    pub service: String,
    /// The frame a client sends (`ClientFrame`).
    pub client_frame: TypeRef,
    /// The frame a server sends (`ServerFrame`).
    pub server_frame: TypeRef,
    /// Every request with its reply, in service order.
    pub requests: Vec<RequestPair>,
    /// The error message carried by a failed reply (`Error`).
    pub error: TypeRef,
    /// The cases of the user-stream event (`Event.kind`).
    pub events: Vec<EventCase>,
    /// The cases of a room log event (`RoomEvent.kind`).
    pub room_events: Vec<EventCase>,
    /// The error codes (`ErrorCode`).
    pub error_codes: EnumModel,
    /// The close codes (`CloseCode`).
    pub close_codes: EnumModel,
    /// Every other enum of the package, by full name.
    pub enums: Vec<EnumModel>,
    /// Every message of the package with its fields, by full name.
    pub messages: Vec<MessageModel>,
}

/// A scalar field type, as the proto spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `bool`
    Bool,
    /// `int32`
    Int32,
    /// `sint32`
    Sint32,
    /// `sfixed32`
    Sfixed32,
    /// `uint32`
    Uint32,
    /// `fixed32`
    Fixed32,
    /// `int64`
    Int64,
    /// `sint64`
    Sint64,
    /// `sfixed64`
    Sfixed64,
    /// `uint64`
    Uint64,
    /// `fixed64`
    Fixed64,
    /// `float`
    Float,
    /// `double`
    Double,
    /// `string`
    String,
    /// `bytes`
    Bytes,
}

/// What one field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// A scalar.
    Scalar(Scalar),
    /// An enum of the package.
    Enum(TypeRef),
    /// A message of the package.
    Message(TypeRef),
}

/// One field of a [`MessageModel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldModel {
    /// The proto name, `client_msg_id`.
    pub name: String,
    /// The proto3 JSON name, `clientMsgId`.
    pub json_name: String,
    /// The field number.
    pub number: u32,
    /// What it holds.
    pub ty: FieldType,
    /// `repeated`.
    pub repeated: bool,
    /// Proto3 `optional` (explicit presence for a scalar).
    pub optional: bool,
    /// The index in [`MessageModel::oneofs`] when the field is a case of a (real) oneof.
    pub oneof: Option<usize>,
    /// The field's leading comment.
    pub doc: String,
}

/// A real oneof of a message (not the synthetic one of a proto3 `optional`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneofModel {
    /// The oneof name, `request`.
    pub name: String,
    /// The oneof's leading comment.
    pub doc: String,
}

/// A message of the package with its fields, for back ends that emit their own message types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageModel {
    /// The message.
    pub ty: TypeRef,
    /// Its fields in declaration order.
    pub fields: Vec<FieldModel>,
    /// Its real oneofs in declaration order.
    pub oneofs: Vec<OneofModel>,
    /// The message's leading comment.
    pub doc: String,
}

//! Typed helpers over [`Client::call`]: one method per request of `ChatwireService` (generated
//! by a macro from the request/response pairs), a few conveniences (`connect`, `send_message`),
//! and [`CALLS`], the rpc names covered, which a test checks against the service descriptor.
//!
//! Each helper returns the expected response; an error reply is [`ClientError::Server`] and any
//! other result [`ClientError::UnexpectedReply`].

use chatwire_protocol::v1::{self, client_frame::Request, reply};

use super::connection::{Client, ClientError};

macro_rules! calls {
    ($($method:ident: $variant:ident($request:ident) -> $response:ident;)*) => {
        impl Client {
            $(
                #[doc = concat!("Calls `", stringify!($variant), "`: sends a `",
                    stringify!($request), "`, returns its `", stringify!($response), "`.")]
                pub async fn $method(&self, request: v1::$request) -> Result<v1::$response, ClientError> {
                    match self.call(Request::$variant(request)).await? {
                        reply::Result::$variant(response) => Ok(response),
                        other => Err(ClientError::from_result(other)),
                    }
                }
            )*
        }

        /// The rpc names of `ChatwireService` that [`Client`] has a typed helper for.
        pub const CALLS: &[&str] = &[$(stringify!($variant)),*];
    };
}

calls! {
    connect_with: Connect(ConnectRequest) -> ConnectResponse;
    refresh: Refresh(RefreshRequest) -> RefreshResponse;
    ping: Ping(PingRequest) -> PingResponse;
    create_group: CreateGroup(CreateGroupRequest) -> CreateGroupResponse;
    open_direct: OpenDirect(OpenDirectRequest) -> OpenDirectResponse;
    get_room: GetRoom(GetRoomRequest) -> GetRoomResponse;
    update_room: UpdateRoom(UpdateRoomRequest) -> UpdateRoomResponse;
    list_members: ListMembers(ListMembersRequest) -> ListMembersResponse;
    add_members: AddMembers(AddMembersRequest) -> AddMembersResponse;
    remove_member: RemoveMember(RemoveMemberRequest) -> RemoveMemberResponse;
    set_role: SetRole(SetRoleRequest) -> SetRoleResponse;
    leave_room: LeaveRoom(LeaveRoomRequest) -> LeaveRoomResponse;
    send: Send(SendRequest) -> SendResponse;
    edit: Edit(EditRequest) -> EditResponse;
    delete: Delete(DeleteRequest) -> DeleteResponse;
    react: React(ReactRequest) -> ReactResponse;
    history: History(HistoryRequest) -> HistoryResponse;
    subscribe: Subscribe(SubscribeRequest) -> SubscribeResponse;
    unsubscribe: Unsubscribe(UnsubscribeRequest) -> UnsubscribeResponse;
    sync: Sync(SyncRequest) -> SyncResponse;
    mark_delivered: MarkDelivered(MarkDeliveredRequest) -> MarkDeliveredResponse;
    mark_read: MarkRead(MarkReadRequest) -> MarkReadResponse;
    get_receipts: GetReceipts(GetReceiptsRequest) -> GetReceiptsResponse;
    typing: Typing(TypingRequest) -> TypingResponse;
    watch_presence: WatchPresence(WatchPresenceRequest) -> WatchPresenceResponse;
    unwatch_presence: UnwatchPresence(UnwatchPresenceRequest) -> UnwatchPresenceResponse;
    call_signal: CallSignal(CallSignalRequest) -> CallSignalResponse;
    block_user: BlockUser(BlockUserRequest) -> BlockUserResponse;
    unblock_user: UnblockUser(UnblockUserRequest) -> UnblockUserResponse;
    list_blocked: ListBlocked(ListBlockedRequest) -> ListBlockedResponse;
    register_push_token: RegisterPushToken(RegisterPushTokenRequest) -> RegisterPushTokenResponse;
    unregister_push_token: UnregisterPushToken(UnregisterPushTokenRequest) -> UnregisterPushTokenResponse;
    mute_room: MuteRoom(MuteRoomRequest) -> MuteRoomResponse;
    search: Search(SearchRequest) -> SearchResponse;
    restrict_member: RestrictMember(RestrictMemberRequest) -> RestrictMemberResponse;
    get_edit_history: GetEditHistory(GetEditHistoryRequest) -> GetEditHistoryResponse;
    report_message: ReportMessage(ReportMessageRequest) -> ReportMessageResponse;
    list_reviews: ListReviews(ListReviewsRequest) -> ListReviewsResponse;
    resolve_review: ResolveReview(ResolveReviewRequest) -> ResolveReviewResponse;
    send_contact_request: SendContactRequest(SendContactRequestRequest) -> SendContactRequestResponse;
    accept_contact_request: AcceptContactRequest(AcceptContactRequestRequest) -> AcceptContactRequestResponse;
    decline_contact_request: DeclineContactRequest(DeclineContactRequestRequest) -> DeclineContactRequestResponse;
    cancel_contact_request: CancelContactRequest(CancelContactRequestRequest) -> CancelContactRequestResponse;
    remove_contact: RemoveContact(RemoveContactRequest) -> RemoveContactResponse;
    list_contacts: ListContacts(ListContactsRequest) -> ListContactsResponse;
}

/// The `ClientInfo` this library sends in `connect`.
pub fn client_info() -> v1::ClientInfo {
    v1::ClientInfo {
        name: "chatwire-conformance".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        platform: "rust".to_owned(),
    }
}

impl Client {
    /// Opens the session: sends `ConnectRequest { token, client: client_info() }` (meant as the
    /// first frame) and returns the `ConnectResponse`.
    pub async fn connect(&self, token: &str) -> Result<v1::ConnectResponse, ClientError> {
        self.connect_with(v1::ConnectRequest {
            token: token.to_owned(),
            client: Some(client_info()),
            ..Default::default()
        })
        .await
    }

    /// Posts a text message.
    pub async fn send_message(
        &self,
        room_id: &str,
        client_msg_id: &str,
        text: &str,
    ) -> Result<v1::SendResponse, ClientError> {
        self.send(v1::SendRequest {
            room_id: room_id.to_owned(),
            client_msg_id: client_msg_id.to_owned(),
            content: Some(v1::Content {
                text: text.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
    }
}

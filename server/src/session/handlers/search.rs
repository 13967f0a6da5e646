//! Search (docs/protocol.md §24): the capability check and the per-user rate limit here; the
//! request itself is [`crate::search::service`] (shared with the benchmark).

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::Ctx;
use crate::chat::error::ChatError;
use crate::search::service;

pub(super) async fn search(ctx: Ctx<'_>, r: v1::SearchRequest) -> Result<Reply, ChatError> {
    let Some(index) = ctx.services.search.clone() else {
        return Err(ChatError::Unsupported(
            "search is not offered by this server",
        ));
    };
    let store = &ctx.services.store;
    let checked = service::check(store.as_ref(), ctx.user, r).await?;
    ctx.services
        .rate_limit("search", ctx.user, ctx.services.rates.search)
        .await?;
    let page = ctx
        .services
        .page_limit(checked.asked_limit(), service::DEFAULT_LIMIT);
    let response = service::run(store, &index, ctx.user, checked, page).await?;
    Ok(Reply::Search(response))
}

//! Finishing touches on the generated API document, applied to every operation so that new
//! endpoints get them too: each response has a description (its status's meaning unless the
//! endpoint gave one); every `/admin` operation documents its 401 with the body the key check
//! really answers, and the 503 any store failure gives; an operation with parameters or a body
//! documents the 400 their parsing gives, one with a body the 415 of a wrong Content-Type.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};

use super::error::ApiError;

/// What a status means, for responses documented without a description.
fn meaning(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "400" => "The request is malformed (`INVALID_ARGUMENT`); `field` names the culprit",
        "401" => "The admin key is missing or wrong",
        "403" => "Not allowed (`PERMISSION_DENIED`)",
        "404" => "No such room, user, message or endpoint (`NOT_FOUND`)",
        "409" => "Conflicts with the current state (`CONFLICT`, `FAILED_PRECONDITION`)",
        "413" => "Over a size limit (`TOO_LARGE`)",
        "415" => "The body is not `Content-Type: application/json` (`INVALID_ARGUMENT`)",
        "429" => "Rate limited (`RATE_LIMITED`); see `Retry-After`",
        "503" => "A backend is not answering (`UNAVAILABLE`); retry",
        _ => "See the error body",
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Adds the missing descriptions and the admin operations' 401.
pub(super) fn complete(api: &mut OpenApi) {
    let unauthenticated = serde_json::to_value(ApiError::unauthenticated().body()).ok();
    for (path, item) in &mut api.paths.paths {
        let admin = path.starts_with("/admin/");
        for operation in operations(item) {
            let error = || {
                let content = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build();
                RefOr::T(
                    ResponseBuilder::new()
                        .content("application/json", content)
                        .build(),
                )
            };
            let responses = &mut operation.responses.responses;
            let parsed = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let body = operation.request_body.is_some();
            if parsed || body {
                responses.entry("400".to_owned()).or_insert_with(error);
            }
            if body {
                responses.entry("415".to_owned()).or_insert_with(error);
            }
            if admin {
                responses.entry("503".to_owned()).or_insert_with(error);
            }
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = meaning(status).to_owned();
                }
            }
            if admin {
                let content = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .example(unauthenticated.clone())
                    .build();
                let response = ResponseBuilder::new()
                    .description(meaning("401"))
                    .content("application/json", content)
                    .build();
                operation
                    .responses
                    .responses
                    .insert("401".to_owned(), RefOr::T(response));
            }
        }
    }
}

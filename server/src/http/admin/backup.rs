//! `/admin/backup`: the server copies its databases (each inside one read transaction, while
//! clients go on writing) and its data folder's secrets into a folder on its own machine, with
//! a manifest (docs/operations.md, "Backup and restore"). `chatwire backup` calls it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Body;
use crate::backup::{BackupError, Manifest};
use crate::http::AppState;

/// Where to write a backup.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct BackupRequest {
    /// An absolute folder path on the server's machine, new or empty.
    pub(super) to: String,
}

/// Backs up the store, every event queue and the secrets into `to`. Answers 409 when `to`
/// is not empty or the server runs on the distributed backends (back those up with their
/// own tools).
#[utoipa::path(post, path = "/backup", tag = "backup", request_body = BackupRequest,
    responses((status = 200, description = "The backup's manifest", body = Manifest),
        (status = 400, body = ErrorBody),
        (status = 409, description = "Target not empty, or not the embedded backends", body = ErrorBody),
        (status = 500, body = ErrorBody)))]
pub(super) async fn backup(
    State(state): State<AppState>,
    Body(r): Body<BackupRequest>,
) -> ApiResult<Json<Manifest>> {
    let to = std::path::PathBuf::from(&r.to);
    if !to.is_absolute() {
        return Err(ApiError::invalid("to", "an absolute path on the server"));
    }
    let Some((data_dir, open)) = state.admin.backup.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "FAILED_PRECONDITION",
            "backups cover the embedded store and event queues; a cluster's data lives in \
             ScyllaDB and RabbitMQ (see docs/operations.md)",
        ));
    };
    let now = state.services.clock.now_ms();
    let done =
        tokio::task::spawn_blocking(move || crate::backup::backup(&data_dir, &open, &to, now))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "backup task failed",
                )
            })?;
    match done {
        Ok(manifest) => {
            tracing::info!(files = manifest.files.len(), to = %r.to, "backup written");
            Ok(Json(manifest))
        }
        Err(err @ BackupError::NotEmpty(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "FAILED_PRECONDITION",
            err.to_string(),
        )),
        Err(err) => {
            tracing::warn!(error = %err, "backup failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                err.to_string(),
            ))
        }
    }
}

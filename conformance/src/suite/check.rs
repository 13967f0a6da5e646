//! How cases report: a [`Failure`] says what the spec asks for and what the server did, and
//! the helpers here turn common checks (an error reply with a code, a close with a code, a
//! deadline) into one.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use chatwire_protocol::v1::{CloseCode, ErrorCode, Event, event};

use crate::client::{Client, ClientError, ClosedBy};

/// How long one step of a case (a reply, an event, a close) may take before the case fails as
/// hung. Generous: it guards against hangs and never measures speed.
pub(super) const STEP: Duration = Duration::from_secs(20);

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A check failed.
    Check {
        /// What the requirement asks for.
        expected: String,
        /// What was observed.
        actual: String,
    },
    /// The case could not run here (a missing capability, key or transport), with the reason.
    Skip(String),
}

impl Failure {
    /// A failed check.
    pub fn new(expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Self::Check {
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        Self::new("the request succeeds", err.to_string())
    }
}

/// The result type of a case and its steps.
pub(super) type Check<T = ()> = Result<T, Failure>;

/// Fails with `expected` unless `cond` holds; `actual` is shown otherwise.
pub(super) fn ensure(cond: bool, expected: impl Into<String>, actual: impl Debug) -> Check {
    if cond {
        Ok(())
    } else {
        Err(Failure::new(expected, format!("{actual:?}")))
    }
}

/// Fails unless `actual == expected`, naming `what`.
pub(super) fn ensure_eq<T: PartialEq + Debug>(what: &str, expected: T, actual: T) -> Check {
    if actual == expected {
        Ok(())
    } else {
        Err(Failure::new(
            format!("{what} = {expected:?}"),
            format!("{what} = {actual:?}"),
        ))
    }
}

/// Waits for `future`, failing as hung after [`STEP`].
pub(super) async fn within<T>(what: &str, future: impl Future<Output = T>) -> Check<T> {
    tokio::time::timeout(STEP, future)
        .await
        .map_err(|_| Failure::new(format!("{what} within {STEP:?}"), "nothing came (hung)"))
}

/// Checks that a call failed with an error reply of `code` (and `field`, when given), with
/// `retryable` as section 19 says for the code.
pub(super) fn ensure_error<T: Debug>(
    result: Result<T, ClientError>,
    code: ErrorCode,
    field: Option<&str>,
) -> Check {
    let expected = match field {
        Some(field) => format!("error {} (field {field:?})", code.as_str_name()),
        None => format!("error {}", code.as_str_name()),
    };
    match result {
        Err(ClientError::Server(err)) => {
            let ok = err.code() == code && field.is_none_or(|f| err.field == f);
            ensure(ok, expected, &err)?;
            ensure_retryable(&err)
        }
        Err(other) => Err(Failure::new(expected, other.to_string())),
        Ok(value) => Err(Failure::new(expected, format!("success: {value:?}"))),
    }
}

/// `retryable` as section 19 states for the codes whose value does not depend.
pub(super) fn ensure_retryable(err: &chatwire_protocol::v1::Error) -> Check {
    let must = match err.code() {
        ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Timeout => return Ok(()),
        ErrorCode::Internal | ErrorCode::Unspecified => return Ok(()),
        _ => false,
    };
    ensure(
        err.retryable == must,
        format!(
            "{} with retryable {must} (section 19)",
            err.code().as_str_name()
        ),
        err,
    )
}

/// Waits for the peer to close and checks its close code.
pub(super) async fn ensure_closed(client: &Client, code: CloseCode) -> Check {
    let info = within("the server closes the connection", client.wait_closed()).await?;
    ensure(
        info.by == ClosedBy::Peer && i32::from(info.code) == code as i32,
        format!(
            "the server closes with {} ({})",
            code.as_str_name(),
            code as i32
        ),
        &info,
    )
}

/// Reads events until a `Disconnect` and checks its code; other events are skipped.
pub(super) async fn ensure_disconnect(client: &Client, code: CloseCode) -> Check<Event> {
    let expected = || format!("a Disconnect event with {} first", code.as_str_name());
    loop {
        let event = within("a Disconnect event", client.next_event())
            .await?
            .map_err(|err| Failure::new(expected(), err.to_string()))?;
        if let Some(event::Kind::Disconnect(d)) = &event.kind {
            ensure(d.code() == code, expected(), d)?;
            return Ok(event);
        }
    }
}

impl From<super::token::TokenError> for Failure {
    fn from(err: super::token::TokenError) -> Self {
        Self::new("a crafted token", err.to_string())
    }
}

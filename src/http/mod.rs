//! The HTTP endpoint: the status page at `/` (see [`page`]), `/healthz` (the process and its scheduler are alive), `/readyz` (the
//! database answers and the last login worked), `/status` (every table, as JSON), `/metrics`
//! (Prometheus text), and the control API (`/tables`, `/runs`; see [`control`]). It reads the
//! status model, and acts through the scheduler's [`Control`] handle.

mod control;
mod page;

use std::future::Future;
use std::io;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::scheduler::Control;
use crate::secret::Secret;
use crate::status::{METRICS_CONTENT_TYPE, Status};

/// What the handlers share.
#[derive(Debug, Clone)]
struct Api {
    status: Status,
    /// The scheduler's levers; `None` where only the read model exists (then the control
    /// endpoints answer 503).
    control: Option<Control>,
    /// The bearer token of the write endpoints; `None`: they are off.
    token: Option<Secret>,
}

/// The endpoint's routes: the status page, health, status and metrics only.
pub fn router(status: Status) -> Router {
    routes(Api {
        status,
        control: None,
        token: None,
    })
}

fn routes(api: Api) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .merge(control::routes())
        .with_state(api)
}

/// Serves the endpoint on `listener` until `shutdown` completes, then lets open requests finish.
/// The control API acts through `control`; its write endpoints need `token`.
pub async fn serve(
    listener: TcpListener,
    status: Status,
    control: Option<Control>,
    token: Option<Secret>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let api = Api {
        status,
        control,
        token,
    };
    axum::serve(listener, routes(api))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(api): State<Api>) -> Response {
    if api.status.is_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler has stopped ticking\n",
        )
            .into_response()
    }
}

async fn readyz(State(api): State<Api>) -> Response {
    let readiness = api.status.readiness();
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(readiness)).into_response()
}

async fn status_json(State(api): State<Api>) -> Response {
    axum::Json(api.status.view()).into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        api.status.render_metrics(),
    )
        .into_response()
}

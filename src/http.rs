//! The HTTP endpoint: `/healthz` (the process and its scheduler are alive), `/readyz` (the
//! database answers and the last login worked), `/status` (every table, as JSON) and `/metrics`
//! (Prometheus text). It reads the status model only.

use std::future::Future;
use std::io;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::status::{METRICS_CONTENT_TYPE, Status};

/// The endpoint's routes.
pub fn router(status: Status) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .with_state(status)
}

/// Serves the endpoint on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    status: Status,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(status))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(status): State<Status>) -> Response {
    if status.is_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler has stopped ticking\n",
        )
            .into_response()
    }
}

async fn readyz(State(status): State<Status>) -> Response {
    let readiness = status.readiness();
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(readiness)).into_response()
}

async fn status_json(State(status): State<Status>) -> Response {
    axum::Json(status.view()).into_response()
}

async fn metrics(State(status): State<Status>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        status.render_metrics(),
    )
        .into_response()
}

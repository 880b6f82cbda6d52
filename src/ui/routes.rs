//! The router: the page and its assets, and the JSON API.
//!
//! - `POST /api/runs` (the options of `send`/`recv`) → `{"id": ID}`; 429
//!   while 16 runs are going
//! - `GET /api/runs` → every run; `GET /api/runs/ID` → one run
//! - `GET /api/runs/ID/events` → the run as server-sent `run` events,
//!   until it ends
//! - `DELETE /api/runs/ID` → cancels the run

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use futures::Stream;

use super::guard::{guard, refusal};
use super::request::RunRequest;
use super::runs::Run;
use super::{assets, App};

/// How often a run's events stream sends it.
const EVENT_INTERVAL: Duration = Duration::from_millis(500);

/// The UI's routes, behind its guard.
pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", assets::PAGE) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", assets::SCRIPT) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", assets::STYLE) }))
        .route("/api/runs", get(list).post(start))
        .route("/api/runs/{id}", get(one).delete(cancel))
        .route("/api/runs/{id}/events", get(events))
        .fallback(|| async { refusal(StatusCode::NOT_FOUND, "no such page") })
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn start(State(app): State<Arc<App>>, body: Result<Json<RunRequest>, JsonRejection>) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return refusal(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    match request.into_job() {
        Ok((job, summary)) => match app.runs.start(job, summary) {
            Some(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
            None => refusal(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} runs are going already; start this one when one of them ends",
                    super::runs::RUNS_AT_ONCE
                ),
            ),
        },
        Err(why) => refusal(StatusCode::BAD_REQUEST, why),
    }
}

async fn list(State(app): State<Arc<App>>) -> Response {
    let views: Vec<_> = app.runs.all().iter().map(|run| run.view()).collect();
    Json(views).into_response()
}

/// The run a path names.
fn find(app: &App, id: &str) -> Option<Arc<Run>> {
    id.parse().ok().and_then(|id| app.runs.get(id))
}

fn no_such_run() -> Response {
    refusal(StatusCode::NOT_FOUND, "no such run")
}

async fn one(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match find(&app, &id) {
        Some(run) => Json(run.view()).into_response(),
        None => no_such_run(),
    }
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(run) = find(&app, &id) else { return no_such_run() };
    if run.ended() {
        return refusal(StatusCode::CONFLICT, "the run has already ended");
    }
    run.cancel();
    (StatusCode::ACCEPTED, Json(run.view())).into_response()
}

async fn events(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match find(&app, &id) {
        Some(run) => Sse::new(run_events(run)).keep_alive(KeepAlive::default()).into_response(),
        None => no_such_run(),
    }
}

/// The run as a `run` event now and every [`EVENT_INTERVAL`], the last
/// one once it has ended.
fn run_events(run: Arc<Run>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(Some((run, true)), |state| async move {
        let (run, first) = state?;
        if !first {
            tokio::time::sleep(EVENT_INTERVAL).await;
        }
        let ended = run.ended();
        let event = Event::default()
            .event("run")
            .json_data(run.view())
            .unwrap_or_else(|e| Event::default().event("error").data(format!("cannot encode the run: {e}")));
        Some((Ok(event), (!ended).then_some((run, false))))
    })
}

//! RFC 7591 dynamic client registration and RFC 7592 management.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::no_store;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Authorization, JsonBody};

pub(super) async fn create(
    State(s): State<AppState>,
    Authorization(auth): Authorization,
    JsonBody(meta): JsonBody,
) -> Result<Response, ApiError> {
    let now = s.engine.now();
    let body = s
        .engine
        .register_client(auth.as_deref(), &meta, now)
        .await?;
    // RFC 7591 §3.2.1: 201 Created.
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

pub(super) async fn read(
    State(s): State<AppState>,
    Path(client_id): Path<String>,
    Authorization(auth): Authorization,
) -> Result<Response, ApiError> {
    let body = s
        .engine
        .read_registration(&client_id, auth.as_deref())
        .await?;
    Ok(no_store(Json(body).into_response()))
}

pub(super) async fn update(
    State(s): State<AppState>,
    Path(client_id): Path<String>,
    Authorization(auth): Authorization,
    JsonBody(meta): JsonBody,
) -> Result<Response, ApiError> {
    let body = s
        .engine
        .update_registration(&client_id, auth.as_deref(), &meta)
        .await?;
    Ok(no_store(Json(body).into_response()))
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Path(client_id): Path<String>,
    Authorization(auth): Authorization,
) -> Result<Response, ApiError> {
    s.engine
        .delete_registration(&client_id, auth.as_deref())
        .await?;
    // RFC 7592 §2.3: 204 No Content.
    Ok(StatusCode::NO_CONTENT.into_response())
}

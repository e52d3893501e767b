//! HTTP errors: a status and a JSON body naming what was wrong.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong bearer token",
        )
    }
}

impl From<fleetbus_engine::EngineError> for ApiError {
    fn from(e: fleetbus_engine::EngineError) -> ApiError {
        use fleetbus_engine::EngineError as E;
        match &e {
            E::Backpressure { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                e.to_string(),
            ),
            E::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
            E::NotFound(_) => ApiError::not_found(e.to_string()),
            E::Exists(_) => ApiError::new(
                StatusCode::CONFLICT,
                "ResourceAlreadyExistsException",
                e.to_string(),
            ),
            E::Invalid(_) => ApiError::bad_request(e.to_string()),
            E::UnknownBus(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                e.to_string(),
            ),
            E::Rule { .. } | E::Query(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                e.to_string(),
            ),
            E::Store { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "InternalException",
                e.to_string(),
            ),
        }
    }
}

impl From<fleetbus_event::EventError> for ApiError {
    fn from(e: fleetbus_event::EventError) -> ApiError {
        match e {
            fleetbus_event::EventError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "EventTooLarge",
                e.to_string(),
            ),
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        match self.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"fleetbus\""),
                );
            }
            _ => {}
        }
        resp
    }
}

//! The API's error: one JSON shape for every 4xx/5xx (`{"api_version":1,"error":{…}}`, see
//! API.md), built by handlers and middleware. Nothing here decides policy.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::API_VERSION;

/// An error answer: status, machine code, human message and the optional details of API.md.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub parameter: Option<&'static str>,
    pub allowed: Option<serde_json::Value>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            parameter: None,
            allowed: None,
            retry_after_s: None,
        }
    }

    /// 400 naming the parameter.
    pub fn bad_parameter(parameter: &'static str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            parameter: Some(parameter),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                format!("{parameter}: {message}"),
            )
        }
    }

    pub fn with_allowed(mut self, allowed: serde_json::Value) -> ApiError {
        self.allowed = Some(allowed);
        self
    }

    pub fn too_many(
        code: &'static str,
        message: impl Into<String>,
        retry_after_s: u64,
    ) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
        });
        if let Some(object) = error.as_object_mut() {
            if let Some(parameter) = self.parameter {
                object.insert("parameter".into(), parameter.into());
            }
            if let Some(allowed) = &self.allowed {
                object.insert("allowed".into(), allowed.clone());
            }
            if let Some(retry_after_s) = self.retry_after_s {
                object.insert("retry_after_s".into(), retry_after_s.into());
            }
        }
        json!({ "api_version": API_VERSION, "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(retry_after_s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}

//! The routes and their query parsing: unknown or repeated parameters and bad values are 400s
//! naming the parameter; `threshold_bp` must be a configured threshold.

mod health;
mod history;
mod live;
mod monitoring;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::ApiError;
use crate::server::{AppState, guard};

pub(crate) use history::StreamCounters;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/api/monitoring/memory", get(monitoring::memory))
        .route("/api/monitoring/memory/trend", get(monitoring::trend))
        .route("/api/monitoring/alerts", get(monitoring::alerts))
        .route("/api/opportunities", get(live::opportunities))
        .route("/api/endpoints", get(live::endpoints))
        .route("/api/history/opportunities", get(history::opportunities))
        .route("/api/dashboard_data", get(history::dashboard_data))
        .route("/api/history/streams", get(history::streams))
        .route("/", get(asset_index))
        .route("/assets/{*path}", get(asset))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route (see API.md)",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            guard,
        ))
        .with_state(state)
}

/// A JSON 200 with the API version added at the top level.
pub(crate) fn json_ok(mut body: serde_json::Value) -> Response {
    if let Some(object) = body.as_object_mut() {
        object.insert("api_version".into(), crate::API_VERSION.into());
    }
    axum::Json(body).into_response()
}

pub(crate) fn json_status(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = json_ok(body);
    *response.status_mut() = status;
    response
}

/// A request's query parameters, checked against the route's list.
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&'static str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    format!("query string: {error}"),
                )
            })?;
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let Some(name) = allowed.iter().find(|name| **name == key) else {
                return Err(ApiError {
                    parameter: None,
                    ..ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_parameter",
                        format!("unknown parameter `{key}` (this route takes {allowed:?})"),
                    )
                }
                .with_allowed(json!(allowed)));
            };
            if map.insert(key, value).is_some() {
                return Err(ApiError::bad_parameter(name, "given more than once"));
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn integer(
        &self,
        name: &'static str,
        default: u64,
        low: u64,
        high: u64,
    ) -> Result<u64, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        let value: u64 = text.parse().map_err(|_| {
            ApiError::bad_parameter(name, format!("`{text}` is not a whole number"))
        })?;
        if !(low..=high).contains(&value) {
            return Err(ApiError::bad_parameter(
                name,
                format!("{value} is not in {low}..={high}"),
            ));
        }
        Ok(value)
    }

    /// `threshold_bp`: one of the configured thresholds (default the first).
    pub fn threshold_bp(&self, configured: &[f64]) -> Result<f64, ApiError> {
        let allowed = json!(configured);
        let Some(text) = self.get("threshold_bp") else {
            return configured
                .first()
                .copied()
                .ok_or_else(|| ApiError::internal("no thresholds configured"));
        };
        let value: f64 = text.parse().map_err(|_| {
            ApiError::bad_parameter(
                "threshold_bp",
                format!("`{text}` is not a number; configured: {configured:?}"),
            )
            .with_allowed(allowed.clone())
        })?;
        configured
            .iter()
            .copied()
            .find(|threshold| (threshold - value).abs() < 1e-9)
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    "threshold_bp",
                    format!("{value} is not a configured threshold (windows.thresholds_bp = {configured:?})"),
                )
                .with_allowed(allowed)
            })
    }

    pub fn date(&self) -> Result<tickflow_history::Date, ApiError> {
        let text = self
            .get("date")
            .ok_or_else(|| ApiError::bad_parameter("date", "required (YYYY-MM-DD)"))?;
        tickflow_history::Date::parse(text)
            .map_err(|error| ApiError::bad_parameter("date", format!("`{text}`: {error}")))
    }
}

/// The Content-Security-Policy of the dashboard: same origin, plus the endpoints plugins
/// published (the broadcast sink's WebSocket, the metrics URL).
fn content_security_policy(state: &AppState) -> String {
    let mut connect = String::from("'self'");
    if let Some(status) = state
        .view
        .live
        .as_ref()
        .and_then(|live| live.board.status())
    {
        for endpoint in &status.endpoints {
            // Scheme, host and port only; the URLs were validated by the host.
            let origin: String = endpoint
                .url
                .splitn(4, '/')
                .take(3)
                .collect::<Vec<_>>()
                .join("/");
            if origin
                .chars()
                .all(|c| c.is_ascii_graphic() && c != ';' && c != '\'')
            {
                connect.push(' ');
                connect.push_str(&origin);
            }
        }
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}

fn serve_asset(state: &AppState, path: &str) -> Response {
    let Some((content_type, bytes)) = crate::assets::find(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no asset `{path}`"),
        )
        .into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(state)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

async fn asset_index(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> Response {
    serve_asset(&state, "index.html")
}

async fn asset(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    serve_asset(&state, &path)
}

//! [`Fields`]: a Pushi REST request's named values, wherever the client put them.
//!
//! Pushi's clients send the same field in the query string, a JSON body or a form body,
//! depending on the client and the call; handlers should not care which.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::{Map, Value};

use crate::http::error::{ApiError, ApiResult};

/// The most records a listing (`GET /events`, `GET /deliveries`) returns, whatever `count`
/// asks.
pub const MAX_COUNT: u32 = 1000;

/// Request fields from the query string and the body (JSON object or form), query winning,
/// as Pushi reads them.
pub struct Fields {
    /// Everything, query values over body values.
    pub all: Map<String, Value>,
    /// The body alone (where a name means something else in the query, as Web Push's `auth`).
    pub body: Map<String, Value>,
    query: Vec<(String, String)>,
}

impl Fields {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.all.get(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.all
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A value from the query string only.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
    }

    pub fn required(&self, name: &str) -> ApiResult<&str> {
        self.str(name)
            .ok_or_else(|| ApiError::bad_request(format!("missing field \"{name}\"")))
    }

    /// A listing's `count`: absent, empty or 0 asks for `default`; more than [`MAX_COUNT`]
    /// gets [`MAX_COUNT`]; anything but a non-negative integer is refused.
    pub fn count(&self, default: u32) -> ApiResult<u32> {
        let bad = || ApiError::bad_request("count must be a non-negative integer");
        let asked: u64 = match self.all.get("count") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
            Some(Value::String(s)) if s.is_empty() => 0,
            // All digits but too many for u64: as many as allowed.
            Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().unwrap_or(u64::MAX)
            }
            Some(_) => return Err(bad()),
        };
        Ok(match asked {
            0 => default.min(MAX_COUNT),
            n => n.min(u64::from(MAX_COUNT)) as u32,
        })
    }

    /// Pushi's booleans: true unless "", "0", "false" or "False"; JSON booleans as they are.
    pub fn flag(&self, name: &str) -> Option<bool> {
        flag_value(self.all.get(name)?)
    }
}

pub fn flag_value(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Null => None,
        Value::Number(n) => Some(n.as_f64() != Some(0.0)),
        Value::String(s) => Some(!matches!(s.as_str(), "" | "0" | "false" | "False")),
        _ => Some(true),
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = axum::body::to_bytes(req.into_body(), super::MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::too_large("request body is too large"))?;
        let mut body = Map::new();
        if !bytes.is_empty() {
            if is_form {
                for (k, v) in form_urlencoded::parse(&bytes) {
                    body.insert(k.into_owned(), Value::String(v.into_owned()));
                }
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(map)) => body = map,
                    Ok(_) => return Err(ApiError::bad_request("body must be a JSON object")),
                    Err(e) => {
                        return Err(ApiError::bad_request(format!(
                            "body is not valid JSON: {e}"
                        )));
                    }
                }
            }
        }
        let mut all = body.clone();
        for (k, v) in &query {
            all.insert(k.clone(), Value::String(v.clone()));
        }
        Ok(Self { all, body, query })
    }
}

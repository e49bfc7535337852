//! Pushi's JSON conventions shared by its REST routers: the envelope every stored record is
//! shown in, and the reply when there is nothing else to say.

use axum::Json;
use serde_json::{Value, json};

/// A stored record as Pushi (on Appier) shows it: its id, Appier's 24-hex `_id`, its times
/// and the app instance it belongs to. Callers add the record's own fields.
pub fn record_json(id: i64, created: i64, modified: i64, instance: &str) -> Value {
    json!({
        "id": id,
        "_id": format!("{id:024x}"),
        "enabled": true,
        "description": null,
        "meta": {},
        "created": created,
        "modified": modified,
        "instance": instance,
    })
}

/// `{"result": "success"}`.
pub fn success() -> Json<Value> {
    Json(json!({"result": "success"}))
}

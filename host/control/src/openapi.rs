//! The OpenAPI document `GET /openapi.json` serves.

use serde_json::{Value, json};

fn op(summary: &str, role: &str, responses: Value) -> Value {
    json!({
        "summary": summary,
        "description": format!("Role: {role}."),
        "security": [{"bearer": []}],
        "responses": responses,
    })
}

fn schema(name: &str) -> Value {
    json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}})
}

/// The API, described in OpenAPI 3.0.
pub fn document() -> Value {
    let error = json!({"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "weft control", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
                "Bundle": {"type": "object", "properties": {
                    "digest": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"},
                    "size": {"type": "integer"}, "uploaded_by": {"type": "string"},
                    "uploaded_at": {"type": "string"}, "signed_by": {"type": "string", "nullable": true}}},
                "Promote": {"type": "object", "required": ["name", "version"], "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"},
                    "selector": {"type": "object", "additionalProperties": {"type": "string"}},
                    "canary": {"type": "integer", "description": "this many proxies first; the rest once they all ACK"}}},
                "Rollback": {"type": "object", "required": ["name", "version"], "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"}}},
                "Promotion": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "kind": {"type": "string", "enum": ["promote", "rollback"]},
                    "name": {"type": "string"}, "version": {"type": "string"}, "digest": {"type": "string"},
                    "selector": {"type": "object"}, "canaries": {"type": "array", "items": {"type": "string"}, "nullable": true},
                    "stage": {"type": "string", "enum": ["canary", "complete", "failed"]},
                    "by": {"type": "string"}, "at": {"type": "string"}}},
                "Desired": {"type": "object", "properties": {
                    "digest": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"}}},
                "Report": {"type": "object", "required": ["digest", "ok"], "properties": {
                    "digest": {"type": "string"}, "ok": {"type": "boolean"},
                    "reason": {"type": "string"}, "labels": {"type": "object"}}},
                "Status": {"type": "object", "properties": {
                    "promotions": {"type": "array", "items": {"$ref": "#/components/schemas/Promotion"}},
                    "proxies": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                        "labels": {"type": "object"}, "last_seen": {"type": "string"},
                        "applied": {"type": "string", "nullable": true}, "refused": {"type": "string", "nullable": true},
                        "reason": {"type": "string", "nullable": true},
                        "desired": {"$ref": "#/components/schemas/Desired"},
                        "state": {"type": "string", "enum": ["ack", "nack", "pending"]}}}}}},
                "AuditEntry": {"type": "object", "properties": {
                    "at": {"type": "string"}, "who": {"type": "string"},
                    "action": {"type": "string", "enum": ["push", "promote", "rollback", "ack", "nack", "stage"]},
                    "detail": {"type": "object"}}}
            }
        },
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
            "/v1/bundles": {
                "post": {
                    "summary": "Push a bundle archive (the request body, application/gzip)",
                    "description": "Role: admin. Versions are immutable: the same name and version with another digest is 409.",
                    "security": [{"bearer": []}],
                    "requestBody": {"content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": {"201": schema("Bundle"), "200": schema("Bundle"), "400": error, "401": error, "403": error, "409": error, "413": error}
                },
                "get": op("List bundles", "reader", json!({"200": {"description": "bundles", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Bundle"}}}}}, "401": error, "403": error}))
            },
            "/v1/bundles/{digest}": {"get": op("Download a bundle archive", "reader or proxy", json!({"200": {"description": "the archive"}, "404": error}))},
            "/v1/promotions": {"post": {
                "summary": "Promote a version to the proxies a selector picks (optionally staged)",
                "description": "Role: admin.", "security": [{"bearer": []}],
                "requestBody": schema("Promote"),
                "responses": {"201": schema("Promotion"), "400": error, "401": error, "403": error, "404": error}}},
            "/v1/rollback": {"post": {
                "summary": "Run an earlier version again, for the bundle's last selector",
                "description": "Role: admin.", "security": [{"bearer": []}],
                "requestBody": schema("Rollback"),
                "responses": {"201": schema("Promotion"), "401": error, "403": error, "404": error}}},
            "/v1/status": {"get": op("Promotions and every proxy: labels, last seen, desired, applied, ACK/NACK", "reader", json!({"200": schema("Status")}))},
            "/v1/history": {"get": op("The append-only audit history", "reader", json!({"200": {"description": "entries, oldest first", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}}}))},
            "/v1/proxies/{id}/desired": {"get": {
                "summary": "What the proxy should run (long poll: waits up to `wait` seconds for it to differ from `known`)",
                "description": "Role: proxy.", "security": [{"bearer": []}],
                "parameters": [
                    {"name": "labels", "in": "query", "schema": {"type": "string"}, "description": "k=v,k2=v2"},
                    {"name": "known", "in": "query", "schema": {"type": "string"}, "description": "the digest it runs"},
                    {"name": "wait", "in": "query", "schema": {"type": "integer"}, "description": "seconds, at most 60"}],
                "responses": {"200": schema("Desired"), "204": {"description": "nothing new"}, "400": error, "401": error, "403": error}}},
            "/v1/proxies/{id}/report": {"post": {
                "summary": "ACK (applied on every worker) or NACK (refused, with the reason) a bundle",
                "description": "Role: proxy.", "security": [{"bearer": []}],
                "requestBody": schema("Report"),
                "responses": {"204": {"description": "recorded"}, "400": error, "401": error, "403": error}}}
        }
    })
}

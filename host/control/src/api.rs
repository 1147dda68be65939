//! The control endpoint's JSON types, shared by the server, the proxies'
//! subscription and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels: a proxy's, or a promotion's selector.
pub type Labels = BTreeMap<String, String>;

/// A stored bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// `sha256:<hex>` of its manifest.
    pub digest: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// Who uploaded it (the token's name).
    pub uploaded_by: String,
    /// When, RFC 3339.
    pub uploaded_at: String,
    /// The id of the key that signed it, if signed.
    pub signed_by: Option<String>,
}

/// What `POST /v1/promotions` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The bundle's name.
    pub name: String,
    /// The version to run.
    pub version: String,
    /// The proxies it is for: those whose labels include all of these.
    #[serde(default)]
    pub selector: Labels,
    /// Staged: this many proxies first; the rest once all of them ACK.
    #[serde(default)]
    pub canary: Option<usize>,
}

/// What `POST /v1/rollback` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The bundle's name.
    pub name: String,
    /// The earlier version to run again.
    pub version: String,
}

/// Where a staged promotion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Only its canaries run it.
    Canary,
    /// Every selected proxy runs it.
    Complete,
    /// A canary refused it: nobody else gets it.
    Failed,
}

/// A version of a bundle promoted to the proxies a selector picks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    /// Increasing number.
    pub id: u64,
    /// `promote` or `rollback`.
    pub kind: String,
    /// The bundle's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its digest.
    pub digest: String,
    /// The proxies it is for.
    pub selector: Labels,
    /// For a staged rollout: the proxies that get it first.
    pub canaries: Option<Vec<String>>,
    /// Where it stands.
    pub stage: Stage,
    /// Who promoted it.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
}

/// What a proxy should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// The bundle's digest.
    pub digest: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// A proxy's report after trying a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The bundle it tried.
    pub digest: String,
    /// True: applied on every worker (ACK). False: refused (NACK).
    pub ok: bool,
    /// Why it refused.
    #[serde(default)]
    pub reason: Option<String>,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A proxy as the control endpoint knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRecord {
    /// Its labels, as it last said.
    pub labels: Labels,
    /// When it last asked or reported, RFC 3339.
    pub last_seen: String,
    /// The bundle it last applied (ACKed).
    pub applied: Option<String>,
    /// The bundle it last refused (NACKed), and why.
    pub refused: Option<String>,
    /// Why it refused `refused`.
    pub reason: Option<String>,
}

/// One line of the audit history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, RFC 3339.
    pub at: String,
    /// Who (a token's name, or a proxy's id).
    pub who: String,
    /// What: `push`, `promote`, `rollback`, `ack`, `nack`, `stage`.
    pub action: String,
    /// The details.
    pub detail: serde_json::Value,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Promotions, newest first.
    pub promotions: Vec<Promotion>,
    /// Every proxy seen, by id, with what it should run.
    pub proxies: BTreeMap<String, ProxyStatus>,
}

/// A proxy in `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// What is recorded of it.
    #[serde(flatten)]
    pub record: ProxyRecord,
    /// What it should run now.
    pub desired: Option<Desired>,
    /// `ack` (runs what it should), `nack` (refused it) or `pending`.
    pub state: String,
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

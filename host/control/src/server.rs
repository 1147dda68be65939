//! The control endpoint's HTTP/JSON API (`openapi.json` describes it).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::api::{
    AuditEntry, BundleRecord, ErrorBody, Labels, PromoteRequest, Promotion, ProxyRecord,
    ProxyStatus, Report, RollbackRequest, Stage, Status,
};
use crate::config::{ControlConfig, Role};
use crate::rfc3339;
use crate::store::{Store, StoreError, selects};

/// The longest a proxy's `desired` request waits for a change.
const MAX_WAIT: Duration = Duration::from_secs(60);

struct Shared {
    store: Mutex<Store>,
    config: ControlConfig,
    /// Bumped on every change of what proxies should run.
    changed: watch::Sender<u64>,
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A refusal: boxed, as it travels in `Err`s.
type Refusal = Box<Answer>;

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Box::new(json(
        status,
        &ErrorBody {
            error: message.into(),
        },
    ))
}

fn empty(status: StatusCode) -> Answer {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn store_failed(err: &StoreError) -> Refusal {
    tracing::error!("store: {err}");
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {err}"))
}

/// A running control endpoint.
pub struct Control {
    /// Where it listens.
    pub address: SocketAddr,
    /// Whether it speaks HTTPS.
    pub tls: bool,
    runtime: tokio::runtime::Runtime,
    shutdown: watch::Sender<bool>,
}

/// Why the control endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("data_dir: {0}")]
    Store(#[from] StoreError),
    /// The certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("address {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl Control {
    /// Opens the store and starts serving.
    pub fn start(config: ControlConfig) -> Result<Control, StartError> {
        let store = Store::open(&config.data_dir)?;
        let acceptor = config.tls.as_ref().map(acceptor).transpose()?;
        let acceptor_present = acceptor.is_some();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weft-control")
            .enable_all()
            .build()
            .map_err(|source| StartError::Bind {
                address: config.address,
                source,
            })?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.address))
            .map_err(|source| StartError::Bind {
                address: config.address,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind {
            address: config.address,
            source,
        })?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            config,
            changed: watch::channel(0).0,
        });
        let (shutdown, mut stop) = watch::channel(false);
        runtime.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let shared = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(tls) => {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                            Err(err) => tracing::debug!("TLS handshake failed: {err}"),
                        },
                    }
                });
            }
        });
        Ok(Control {
            address,
            tls: acceptor_present,
            runtime,
            shutdown,
        })
    }

    /// Stops serving.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// The TLS acceptor for the configured certificate and key.
fn acceptor(tls: &crate::config::Tls) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |file: &std::path::Path, e: &dyn std::fmt::Display| {
        StartError::Tls(format!("{}: {e}", file.display()))
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| fail(&tls.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&tls.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| fail(&tls.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(&tls.cert, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Who is calling: a token's name and role; or the answer refusing them.
fn authenticate(
    shared: &Shared,
    request: &Request<Incoming>,
    allowed: &[Role],
) -> Result<String, Refusal> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        let mut answer = error(
            StatusCode::UNAUTHORIZED,
            "a bearer token is needed (Authorization: Bearer TOKEN)",
        );
        answer.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"weft-control\""),
        );
        return Err(answer);
    };
    let hash = weft_bundle::sha256_hex(token.trim().as_bytes());
    let Some(known) = shared.config.tokens.iter().find(|t| t.sha256 == hash) else {
        let mut answer = error(StatusCode::UNAUTHORIZED, "unknown token");
        answer.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(
                "Bearer realm=\"weft-control\", error=\"invalid_token\"",
            ),
        );
        return Err(answer);
    };
    let ok = known.role == Role::Admin || allowed.contains(&known.role);
    if !ok {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "token `{}` has role {:?}, which may not do this",
                known.name, known.role
            ),
        ));
    }
    Ok(known.name.clone())
}

async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, Refusal> {
    let body = Limited::new(request.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the JSON body: {e}")))
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Store> {
    shared.store.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Records `action` by `who` in the history.
fn audit(store: &Store, who: &str, action: &str, detail: serde_json::Value) -> Result<(), Refusal> {
    store
        .audit(&AuditEntry {
            at: now(),
            who: who.to_string(),
            action: action.to_string(),
            detail,
        })
        .map_err(|e| store_failed(&e))
}

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    let outcome = match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(empty(StatusCode::OK)),
        (&Method::GET, ["openapi.json"]) => Ok(json(StatusCode::OK, &crate::openapi::document())),
        (&Method::POST, ["v1", "bundles"]) => push(shared, request).await,
        (&Method::GET, ["v1", "bundles"]) => authenticate(shared, &request, &[Role::Reader])
            .map(|_| json(StatusCode::OK, &lock(shared).state.bundles)),
        (&Method::GET, ["v1", "bundles", digest]) => download(shared, &request, digest),
        (&Method::POST, ["v1", "promotions"]) => promote(shared, request).await,
        (&Method::POST, ["v1", "rollback"]) => rollback(shared, request).await,
        (&Method::GET, ["v1", "status"]) => {
            authenticate(shared, &request, &[Role::Reader]).map(|_| status(shared))
        }
        (&Method::GET, ["v1", "history"]) => authenticate(shared, &request, &[Role::Reader])
            .and_then(|_| {
                lock(shared)
                    .history()
                    .map(|h| json(StatusCode::OK, &h))
                    .map_err(|e| store_failed(&e))
            }),
        (&Method::GET, ["v1", "proxies", id, "desired"]) => {
            let id = id.to_string();
            desired(shared, request, id).await
        }
        (&Method::POST, ["v1", "proxies", id, "report"]) => {
            let id = id.to_string();
            report(shared, request, id).await
        }
        _ => Err(error(
            StatusCode::NOT_FOUND,
            format!("no {method} {path}; see /openapi.json"),
        )),
    };
    outcome.unwrap_or_else(|answer| *answer)
}

async fn push(shared: &Arc<Shared>, request: Request<Incoming>) -> Result<Answer, Refusal> {
    let who = authenticate(shared, &request, &[])?;
    let limit = shared.config.max_upload_mb << 20;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "bundles may be at most {} MiB (max_upload_mb)",
                shared.config.max_upload_mb
            ),
        )
    };
    // An oversized upload is still read (and dropped) up to a cap, so
    // that the client, still sending, hears the 413 instead of a reset.
    let drain_cap = limit.saturating_mul(4);
    if declared.is_some_and(|len| len > drain_cap) {
        return Err(too_large());
    }
    let archive = read_capped(request.into_body(), limit, drain_cap)
        .await
        .ok_or_else(too_large)?;
    let bundle = weft_bundle::Bundle::from_archive(&archive)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let digest = bundle.digest();
    let manifest = &bundle.manifest;
    let mut store = lock(shared);
    if let Some(existing) = store.find(&manifest.name, &manifest.version) {
        if existing.digest == digest {
            return Ok(json(StatusCode::OK, existing));
        }
        return Err(error(
            StatusCode::CONFLICT,
            format!(
                "bundle `{}` version {} exists with digest {}; versions cannot change — push a new version",
                manifest.name, manifest.version, existing.digest
            ),
        ));
    }
    store
        .put_bundle(&digest, &archive)
        .map_err(|e| store_failed(&e))?;
    let record = BundleRecord {
        digest: digest.clone(),
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        size: archive.len() as u64,
        uploaded_by: who.clone(),
        uploaded_at: now(),
        signed_by: bundle
            .signature
            .as_ref()
            .and_then(|s| weft_bundle::PublicKey::parse(&s.key).ok())
            .map(|k| k.id()),
    };
    store.state.bundles.push(record.clone());
    store.save().map_err(|e| store_failed(&e))?;
    audit(
        &store,
        &who,
        "push",
        serde_json::json!({"name": record.name, "version": record.version, "digest": digest}),
    )?;
    tracing::info!(bundle = %record.name, version = %record.version, %digest, by = %who, "bundle pushed");
    Ok(json(StatusCode::CREATED, &record))
}

fn download(
    shared: &Arc<Shared>,
    request: &Request<Incoming>,
    digest: &str,
) -> Result<Answer, Refusal> {
    authenticate(shared, request, &[Role::Reader, Role::Proxy])?;
    let archive = lock(shared)
        .get_bundle(digest)
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no bundle {digest}")))?;
    let mut response = Response::new(Full::new(Bytes::from(archive)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/gzip"),
    );
    Ok(response)
}

/// The body, if it is at most `limit` bytes; a longer one is read on (and
/// dropped) up to `cap` bytes.
async fn read_capped(mut body: Incoming, limit: u64, cap: u64) -> Option<Bytes> {
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Some(data) = frame.data_ref() {
            seen += data.len() as u64;
            if seen <= limit {
                kept.extend_from_slice(data);
            } else if seen > cap {
                return None;
            }
        }
    }
    (seen <= limit).then(|| kept.freeze())
}

/// Records a promotion of `name` at `version` and tells the proxies.
fn record_promotion(
    shared: &Arc<Shared>,
    who: &str,
    kind: &str,
    (name, version): (&str, &str),
    selector: Labels,
    canary: Option<usize>,
) -> Result<Answer, Refusal> {
    let mut store = lock(shared);
    let bundle = store.find(name, version).cloned().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no bundle `{name}` version {version} has been pushed"),
        )
    })?;
    let canaries = canary.map(|k| {
        // The first proxies (by id) the selector picks among those known.
        store
            .state
            .proxies
            .iter()
            .filter(|(_, p)| selects(&selector, &p.labels))
            .map(|(id, _)| id.clone())
            .take(k.max(1))
            .collect::<Vec<_>>()
    });
    let promotion = Promotion {
        id: store.state.promotions.last().map_or(1, |p| p.id + 1),
        kind: kind.to_string(),
        name: bundle.name.clone(),
        version: bundle.version.clone(),
        digest: bundle.digest.clone(),
        selector,
        stage: if canaries.as_ref().is_some_and(|c| !c.is_empty()) {
            Stage::Canary
        } else {
            Stage::Complete
        },
        canaries,
        by: who.to_string(),
        at: now(),
    };
    store.state.promotions.push(promotion.clone());
    store.save().map_err(|e| store_failed(&e))?;
    audit(
        &store,
        who,
        kind,
        serde_json::to_value(&promotion).unwrap_or_default(),
    )?;
    drop(store);
    shared.changed.send_modify(|g| *g += 1);
    tracing::info!(bundle = %promotion.name, version = %promotion.version, by = %who, "{kind}");
    Ok(json(StatusCode::CREATED, &promotion))
}

async fn promote(shared: &Arc<Shared>, request: Request<Incoming>) -> Result<Answer, Refusal> {
    let who = authenticate(shared, &request, &[])?;
    let asked: PromoteRequest = read_json(request).await?;
    record_promotion(
        shared,
        &who,
        "promote",
        (&asked.name, &asked.version),
        asked.selector,
        asked.canary,
    )
}

async fn rollback(shared: &Arc<Shared>, request: Request<Incoming>) -> Result<Answer, Refusal> {
    let who = authenticate(shared, &request, &[])?;
    let asked: RollbackRequest = read_json(request).await?;
    let selector = lock(shared)
        .state
        .promotions
        .iter()
        .rev()
        .find(|p| p.name == asked.name)
        .map(|p| p.selector.clone())
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "bundle `{}` was never promoted: nothing to roll back",
                    asked.name
                ),
            )
        })?;
    record_promotion(
        shared,
        &who,
        "rollback",
        (&asked.name, &asked.version),
        selector,
        None,
    )
}

fn status(shared: &Arc<Shared>) -> Answer {
    let store = lock(shared);
    let proxies: BTreeMap<String, ProxyStatus> = store
        .state
        .proxies
        .iter()
        .map(|(id, record)| {
            let desired = store.desired(id, &record.labels);
            let state = match &desired {
                Some(d) if record.applied.as_deref() == Some(&d.digest) => "ack",
                Some(d) if record.refused.as_deref() == Some(&d.digest) => "nack",
                None => "ack",
                Some(_) => "pending",
            };
            (
                id.clone(),
                ProxyStatus {
                    record: record.clone(),
                    desired,
                    state: state.to_string(),
                },
            )
        })
        .collect();
    let mut promotions = store.state.promotions.clone();
    promotions.reverse();
    json(
        StatusCode::OK,
        &Status {
            promotions,
            proxies,
        },
    )
}

/// The labels a proxy gives as `labels=k=v,k2=v2`. A pair without `=`
/// is refused: dropping it would record (and match) other labels than
/// the proxy has.
fn query_labels(query: &str) -> Result<Labels, String> {
    // Split first, then decode: a key or value may hold an encoded `,` or `=`.
    let Some(all) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("labels="))
    else {
        return Ok(Labels::default());
    };
    all.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((percent_decode(k), percent_decode(v))),
            _ => Err(format!(
                "query `labels`: `{}` is not KEY=VALUE",
                percent_decode(pair)
            )),
        })
        .collect()
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i..] {
            [b'%', hi, lo, ..] => hex(hi).zip(hex(lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /v1/proxies/{id}/desired?labels=..&known=DIGEST&wait=SECS`: what
/// the proxy should run, once it differs from `known` (long poll).
async fn desired(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    id: String,
) -> Result<Answer, Refusal> {
    authenticate(shared, &request, &[Role::Proxy])?;
    let query = request.uri().query().unwrap_or_default();
    let labels = query_labels(query).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let known = query_value(query, "known").unwrap_or_default();
    let wait = match query_value(query, "wait") {
        None => Duration::ZERO,
        Some(w) => w.parse::<u64>().map(Duration::from_secs).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                format!("query `wait`: `{w}` is not a whole number of seconds"),
            )
        })?,
    }
    .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = shared.changed.subscribe();
    loop {
        let desired = {
            let mut store = lock(shared);
            let record = store.state.proxies.entry(id.clone()).or_default();
            record.labels = labels.clone();
            record.last_seen = now();
            store.desired(&id, &labels)
        };
        match desired {
            Some(d) if d.digest != known => return Ok(json(StatusCode::OK, &d)),
            _ => {}
        }
        changes.borrow_and_update();
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Ok(empty(StatusCode::NO_CONTENT));
        }
    }
}

/// `POST /v1/proxies/{id}/report`: ACK or NACK of a bundle.
async fn report(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    id: String,
) -> Result<Answer, Refusal> {
    authenticate(shared, &request, &[Role::Proxy])?;
    let report: Report = read_json(request).await?;
    let mut store = lock(shared);
    {
        let record: &mut ProxyRecord = store.state.proxies.entry(id.clone()).or_default();
        record.labels = report.labels.clone();
        record.last_seen = now();
        if report.ok {
            record.applied = Some(report.digest.clone());
            record.refused = None;
            record.reason = None;
        } else {
            record.refused = Some(report.digest.clone());
            record.reason = report.reason.clone();
        }
    }
    // A staged promotion moves on when its canaries have all ACKed, and
    // stops at the first NACK.
    let mut staged = None;
    let proxies = store.state.proxies.clone();
    if let Some(promotion) = store
        .state
        .promotions
        .iter_mut()
        .rev()
        .find(|p| p.stage == Stage::Canary && p.digest == report.digest)
    {
        let canaries = promotion.canaries.clone().unwrap_or_default();
        if !report.ok && canaries.contains(&id) {
            promotion.stage = Stage::Failed;
            staged = Some(promotion.clone());
        } else if canaries.iter().all(|c| {
            proxies
                .get(c)
                .is_some_and(|p| p.applied.as_deref() == Some(&promotion.digest))
        }) {
            promotion.stage = Stage::Complete;
            staged = Some(promotion.clone());
        }
    }
    store.save().map_err(|e| store_failed(&e))?;
    let action = if report.ok { "ack" } else { "nack" };
    audit(
        &store,
        &id,
        action,
        serde_json::json!({"digest": report.digest, "reason": report.reason}),
    )?;
    if let Some(promotion) = &staged {
        audit(
            &store,
            &id,
            "stage",
            serde_json::json!({"promotion": promotion.id, "stage": promotion.stage}),
        )?;
    }
    drop(store);
    if staged.is_some() {
        shared.changed.send_modify(|g| *g += 1);
    }
    if !report.ok {
        tracing::warn!(proxy = %id, digest = %report.digest, "NACK: {}", report.reason.as_deref().unwrap_or("no reason given"));
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_survive_the_query_string() {
        let labels = query_labels("known=x&labels=env=prod,team=a%2Cb,k%3D1=v&wait=5").unwrap();
        assert_eq!(labels["env"], "prod");
        assert_eq!(labels["team"], "a,b");
        assert_eq!(labels["k=1"], "v");
        assert_eq!(
            query_value("known=sha256%3Aab&wait=5", "known").as_deref(),
            Some("sha256:ab")
        );
        assert!(query_labels("labels=").unwrap().is_empty());
        assert!(query_labels("wait=5").unwrap().is_empty());
        // A pair without `=` is refused, not dropped.
        assert_eq!(
            query_labels("labels=env=prod,envprod").unwrap_err(),
            "query `labels`: `envprod` is not KEY=VALUE"
        );
        assert!(query_labels("labels==x").is_err());
    }
}

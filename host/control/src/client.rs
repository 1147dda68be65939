//! The control endpoint's HTTP client, for proxies and the CLI.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::Full;

use crate::api::{
    AuditEntry, BundleRecord, Desired, ErrorBody, Labels, PromoteRequest, Promotion, Report,
    RollbackRequest, Status,
};
use crate::http::{Target, exchange};

/// Talks to one control endpoint with one token.
#[derive(Debug, Clone)]
pub struct Client {
    target: Target,
    /// The URL as given, for messages.
    url: String,
    token: String,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("control URL `{url}`: {problem}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The endpoint could not be reached, or the exchange broke.
    #[error("control endpoint {url}: {problem}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened.
        problem: String,
    },
    /// The endpoint refused the call.
    #[error("control endpoint answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// Its `error`.
        message: String,
    },
}

impl Client {
    /// A client of the endpoint at `url` (`http://HOST:PORT`) using `token`.
    pub fn new(url: &str, token: &str) -> Result<Client, ClientError> {
        let fail = |problem: &str| ClientError::Url {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| fail("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(fail("give http://HOST:PORT or https://HOST:PORT")),
        };
        let authority = uri.authority().ok_or_else(|| fail("no host"))?;
        let target = Target::new(tls, authority.as_str()).map_err(|p| fail(&p))?;
        Ok(Client {
            target,
            url: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    /// Trusts the CA certificates in PEM file `ca` (for an https://
    /// endpoint) instead of the system's.
    pub fn trusting(mut self, ca: &std::path::Path) -> Result<Client, ClientError> {
        self.target = self
            .target
            .trusting(ca)
            .map_err(|problem| ClientError::Url {
                url: self.url.clone(),
                problem,
            })?;
        Ok(self)
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One call: `method path` with `body`; the answer's status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let unreachable = |problem: String| ClientError::Unreachable {
            url: self.url.clone(),
            problem,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.target.authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        let content = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(content))
            .map_err(|e| unreachable(e.to_string()))?;
        let answer = exchange(&self.target, request, timeout)
            .await
            .map_err(unreachable)?;
        Ok((answer.status, answer.body))
    }

    /// A call that must succeed, its body decoded as `T`.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self
            .call(method, path, body, Duration::from_secs(60))
            .await?;
        check(status, &bytes)?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unreachable {
            url: self.url.clone(),
            problem: format!("unexpected answer: {e}"),
        })
    }

    /// Pushes a bundle archive.
    pub async fn push(&self, archive: Vec<u8>) -> Result<BundleRecord, ClientError> {
        self.call_json(
            Method::POST,
            "/v1/bundles",
            Some(("application/gzip", Bytes::from(archive))),
        )
        .await
    }

    /// The stored bundles.
    pub async fn bundles(&self) -> Result<Vec<BundleRecord>, ClientError> {
        self.call_json(Method::GET, "/v1/bundles", None).await
    }

    /// Promotes a version.
    pub async fn promote(&self, request: &PromoteRequest) -> Result<Promotion, ClientError> {
        let body = Bytes::from(serde_json::to_vec(request).unwrap_or_default());
        self.call_json(
            Method::POST,
            "/v1/promotions",
            Some(("application/json", body)),
        )
        .await
    }

    /// Rolls back to an earlier version.
    pub async fn rollback(&self, request: &RollbackRequest) -> Result<Promotion, ClientError> {
        let body = Bytes::from(serde_json::to_vec(request).unwrap_or_default());
        self.call_json(
            Method::POST,
            "/v1/rollback",
            Some(("application/json", body)),
        )
        .await
    }

    /// Promotions and proxies.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call_json(Method::GET, "/v1/status", None).await
    }

    /// The audit history.
    pub async fn history(&self) -> Result<Vec<AuditEntry>, ClientError> {
        self.call_json(Method::GET, "/v1/history", None).await
    }

    /// What proxy `id` should run, once it differs from `known` (waiting up
    /// to `wait`); `None` if nothing new came.
    pub async fn desired(
        &self,
        id: &str,
        labels: &Labels,
        known: Option<&str>,
        wait: Duration,
    ) -> Result<Option<Desired>, ClientError> {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let path = format!(
            "/v1/proxies/{}/desired?labels={}&known={}&wait={}",
            encode(id),
            labels.join(","),
            encode(known.unwrap_or_default()),
            wait.as_secs()
        );
        let (status, bytes) = self
            .call(Method::GET, &path, None, wait + Duration::from_secs(10))
            .await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        check(status, &bytes)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Unreachable {
                url: self.url.clone(),
                problem: format!("unexpected answer: {e}"),
            })
    }

    /// A bundle archive.
    pub async fn download(&self, digest: &str) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/bundles/{}", encode(digest));
        let (status, bytes) = self
            .call(Method::GET, &path, None, Duration::from_secs(60))
            .await?;
        check(status, &bytes)?;
        Ok(bytes.to_vec())
    }

    /// Reports an ACK or a NACK.
    pub async fn report(&self, id: &str, report: &Report) -> Result<(), ClientError> {
        let body = Bytes::from(serde_json::to_vec(report).unwrap_or_default());
        let path = format!("/v1/proxies/{}/report", encode(id));
        let (status, bytes) = self
            .call(
                Method::POST,
                &path,
                Some(("application/json", body)),
                Duration::from_secs(30),
            )
            .await?;
        check(status, &bytes)
    }
}

/// A refusal as an error, with the endpoint's `error` text.
fn check(status: StatusCode, bytes: &Bytes) -> Result<(), ClientError> {
    if status.is_success() {
        return Ok(());
    }
    let message = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned());
    Err(ClientError::Refused { status, message })
}

/// Percent-encodes what is not unreserved in a URL.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

//! HTTP call-outs (`proxy_http_call`): a plugin's request to a cluster,
//! sent on the worker's pools, its answer delivered to the plugin's VM.

use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use weft_abi::{
    GrpcCall, GrpcCallResponse, GrpcCaller, HttpCall, HttpCallResponse, HttpCaller, Pairs, Status,
};

use crate::body::RequestBody;
use crate::cluster::Pick;
use crate::worker::Worker;

/// The `proxy_http_call` of plugin `plugin` on this worker; `allowed`
/// names the clusters it may call (all when `None`).
pub(crate) fn caller(
    worker: Weak<Worker>,
    (plugin, generation): (usize, u64),
    name: String,
    allowed: Option<Arc<[String]>>,
) -> HttpCaller {
    Rc::new(move |call: HttpCall| {
        let owner = worker.upgrade().ok_or(Status::InternalFailure)?;
        let cluster = cluster_for(&owner, &name, allowed.as_deref(), &call.upstream)?;
        let request = request(&call)?;
        let token = owner.next_call_token();
        let worker = worker.clone();
        tokio::task::spawn_local(async move {
            let response = send(&worker, cluster, request, call.timeout).await;
            if let Some(worker) = worker.upgrade() {
                worker
                    .slot(plugin)
                    .borrow_mut()
                    .http_call_response(generation, token, response);
            }
        });
        Ok(token)
    })
}

/// The cluster a plugin's call-out goes to: it must exist and be one the
/// plugin may call.
fn cluster_for(
    worker: &Worker,
    plugin: &str,
    allowed: Option<&[String]>,
    cluster: &str,
) -> Result<usize, Status> {
    if let Some(allowed) = allowed
        && !allowed.iter().any(|a| a == cluster)
    {
        // The plugin's slot is borrowed while it runs: its name was
        // captured instead.
        tracing::warn!(
            plugin,
            cluster,
            "call-out refused: the cluster is not in the plugin's allowed_clusters"
        );
        return Err(Status::BadArgument);
    }
    worker
        .clusters
        .iter()
        .position(|c| &*c.name == cluster)
        .ok_or(Status::BadArgument)
}

/// The `proxy_grpc_call` of plugin `plugin` on this worker: a unary call,
/// `POST /SERVICE/METHOD` with `content-type: application/grpc` and the
/// message in one length-prefixed frame, to a cluster that speaks HTTP/2.
pub(crate) fn grpc_caller(
    worker: Weak<Worker>,
    (plugin, generation): (usize, u64),
    name: String,
    allowed: Option<Arc<[String]>>,
) -> GrpcCaller {
    Rc::new(move |call: GrpcCall| {
        let owner = worker.upgrade().ok_or(Status::InternalFailure)?;
        let cluster = cluster_for(&owner, &name, allowed.as_deref(), &call.cluster)?;
        let request = grpc_request(&call)?;
        let token = owner.next_call_token();
        let worker = worker.clone();
        tokio::task::spawn_local(async move {
            let response = grpc_send(&worker, cluster, request, call.timeout).await;
            if let Some(worker) = worker.upgrade() {
                worker
                    .slot(plugin)
                    .borrow_mut()
                    .grpc_call_response(generation, token, response);
            }
        });
        Ok(token)
    })
}

/// gRPC status codes weft itself reports.
const GRPC_DEADLINE_EXCEEDED: u32 = 4;
const GRPC_INTERNAL: u32 = 13;
const GRPC_UNAVAILABLE: u32 = 14;

fn grpc_request(call: &GrpcCall) -> Result<Request<RequestBody>, Status> {
    let uri: Uri = format!("/{}/{}", call.service, call.method)
        .parse()
        .map_err(|_| Status::BadArgument)?;
    let mut framed = Vec::with_capacity(5 + call.message.len());
    framed.push(0); // not compressed
    let len = u32::try_from(call.message.len()).map_err(|_| Status::BadArgument)?;
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&call.message);
    let mut request = Request::new(RequestBody::full(Bytes::from(framed)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(http::header::HOST, HeaderValue::from_static("weft"));
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    for (key, value) in &call.metadata {
        let name = HeaderName::from_bytes(key).map_err(|_| Status::BadArgument)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
        headers.append(name, value);
    }
    Ok(request)
}

/// Sends `request` to `cluster` (an endpoint picked at random by its
/// policy) and reads the whole answer, giving the connection back to its
/// pool; `None` when it could not be sent or read. Call-outs and mirrored
/// requests go this way.
pub(crate) async fn read_whole(
    worker: &Worker,
    cluster: usize,
    request: Request<RequestBody>,
) -> Option<(http::response::Parts, http_body_util::Collected<Bytes>)> {
    let pick = Pick {
        hash: None,
        random: worker.random(),
    };
    let upstream = worker.clusters[cluster].send(request, pick).await.ok()?;
    let (parts, body) = upstream.response.into_parts();
    let collected = body.collect().await.ok()?;
    upstream.endpoint.release(upstream.sender);
    Some((parts, collected))
}

/// Sends a gRPC call and reads its outcome; failures become gRPC statuses
/// (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL).
async fn grpc_send(
    worker: &Weak<Worker>,
    cluster: usize,
    request: Request<RequestBody>,
    timeout: Duration,
) -> GrpcCallResponse {
    let failed = |status| GrpcCallResponse {
        status,
        ..Default::default()
    };
    let exchange = async {
        let Some(worker) = worker.upgrade() else {
            return failed(GRPC_UNAVAILABLE);
        };
        let Some((parts, collected)) = read_whole(&worker, cluster, request).await else {
            return failed(GRPC_UNAVAILABLE);
        };
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let data = collected.to_bytes();
        // A trailers-only answer carries grpc-status in its headers.
        let status = trailers
            .get("grpc-status")
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let status = match (parts.status.is_success(), status) {
            (true, Some(status)) => status,
            _ => GRPC_UNAVAILABLE,
        };
        // One length-prefixed message (compression is not supported).
        let message = match data.get(..5) {
            Some([0, a, b, c, d]) => {
                let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
                data.get(5..5 + len).map(<[u8]>::to_vec)
            }
            None => Some(Vec::new()),
            _ => None,
        };
        let Some(message) = message else {
            return failed(GRPC_INTERNAL);
        };
        let status_message = trailers
            .get("grpc-message")
            .or_else(|| parts.headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        GrpcCallResponse {
            status,
            status_message,
            initial_metadata: pairs(&parts.headers),
            message,
            trailing_metadata: pairs(&trailers),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| failed(GRPC_DEADLINE_EXCEEDED))
}

/// The request a call describes; `:method`, `:path` and `:authority` are
/// required, as the spec says.
fn request(call: &HttpCall) -> Result<Request<RequestBody>, Status> {
    let pseudo = |name: &[u8]| {
        call.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
            .ok_or(Status::BadArgument)
    };
    let method = Method::from_bytes(pseudo(b":method")?).map_err(|_| Status::BadArgument)?;
    let uri: Uri = std::str::from_utf8(pseudo(b":path")?)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or(Status::BadArgument)?;
    let authority =
        HeaderValue::from_bytes(pseudo(b":authority")?).map_err(|_| Status::BadArgument)?;
    let mut request = Request::new(RequestBody::full(Bytes::from(call.body.clone())));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(http::header::HOST, authority);
    for (key, value) in call.headers.iter().filter(|(k, _)| !k.starts_with(b":")) {
        let name = HeaderName::from_bytes(key).map_err(|_| Status::BadArgument)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
        headers.append(name, value);
    }
    Ok(request)
}

/// Sends the call and reads the whole answer; `None` when it failed or
/// timed out.
async fn send(
    worker: &Weak<Worker>,
    cluster: usize,
    request: Request<RequestBody>,
    timeout: Duration,
) -> Option<HttpCallResponse> {
    let exchange = async {
        let worker = worker.upgrade()?;
        let (parts, collected) = read_whole(&worker, cluster, request).await?;
        let mut headers: Pairs = vec![(
            b":status".to_vec(),
            parts.status.as_str().as_bytes().to_vec(),
        )];
        headers.extend(pairs(&parts.headers));
        let trailers = collected.trailers().map(pairs).unwrap_or_default();
        Some(HttpCallResponse {
            headers,
            body: collected.to_bytes().to_vec(),
            trailers,
        })
    };
    // A timeout is a failed call, like any other.
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

fn pairs(map: &http::HeaderMap) -> Pairs {
    map.iter()
        .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

//! HTTP call-outs (`proxy_http_call`): a plugin's request to a cluster,
//! sent on the worker's pools, its answer delivered to the plugin's VM.

use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use weft_abi::{HttpCall, HttpCallResponse, HttpCaller, Pairs, Status};

use crate::body::RequestBody;
use crate::cluster::Pick;
use crate::worker::Worker;

/// The `proxy_http_call` of plugin `plugin` on this worker; `allowed`
/// names the clusters it may call (all when `None`).
pub(crate) fn caller(
    worker: Weak<Worker>,
    plugin: usize,
    name: String,
    allowed: Option<Arc<[String]>>,
) -> HttpCaller {
    Rc::new(move |call: HttpCall| {
        let owner = worker.upgrade().ok_or(Status::InternalFailure)?;
        if let Some(allowed) = &allowed
            && !allowed.contains(&call.upstream)
        {
            // The plugin's slot is borrowed while it runs: its name was
            // captured instead.
            tracing::warn!(
                plugin = %name,
                cluster = %call.upstream,
                "call-out refused: the cluster is not in the plugin's allowed_clusters"
            );
            return Err(Status::BadArgument);
        }
        let cluster = owner
            .clusters
            .iter()
            .position(|c| *c.name == call.upstream)
            .ok_or(Status::BadArgument)?;
        let request = request(&call)?;
        let token = owner.next_call_token();
        let worker = worker.clone();
        tokio::task::spawn_local(async move {
            let response = send(&worker, cluster, request, call.timeout).await;
            if let Some(worker) = worker.upgrade() {
                worker.plugins[plugin]
                    .borrow_mut()
                    .http_call_response(token, response);
            }
        });
        Ok(token)
    })
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
        let pick = Pick {
            hash: None,
            random: worker.random(),
        };
        let upstream = worker.clusters[cluster].send(request, pick).await.ok()?;
        let (parts, body) = upstream.response.into_parts();
        let collected = body.collect().await.ok()?;
        upstream.endpoint.release(upstream.sender);
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

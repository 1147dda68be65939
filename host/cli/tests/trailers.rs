//! Trailers through the filter chain (an HTTP/2 client and upstream send
//! trailers, a filter's `proxy_on_request_trailers` and
//! `proxy_on_response_trailers` add one each way), and gRPC call-outs,
//! whose status arrives in trailers.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::Weft;

/// Adds `x-filter-saw: trailers` to the request and response trailers.
const TRAILER_FILTER: &str = r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "x-filter-saw")
  (data (i32.const 120) "trailers")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 1) (i32.const 100) (i32.const 12) (i32.const 120) (i32.const 8)))
    (i32.const 0))
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 3) (i32.const 100) (i32.const 12) (i32.const 120) (i32.const 8)))
    (i32.const 0)))"#;

/// A body of one data frame and then trailers.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl WithTrailers {
    fn new(data: &'static str, trailer: (&'static str, &'static str)) -> Self {
        let mut trailers = HeaderMap::new();
        trailers.insert(trailer.0, trailer.1.parse().unwrap());
        WithTrailers {
            data: Some(Bytes::from_static(data.as_bytes())),
            trailers: Some(trailers),
        }
    }
}

impl Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// An HTTP/2 (prior knowledge) upstream that records the request trailers
/// it gets and answers `hi` with the trailer `grpc-status: 0`.
fn h2_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = support::h2_server(None, move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            let collected = req.into_body().collect().await?;
            record
                .lock()
                .unwrap()
                .push(collected.trailers().cloned().unwrap_or_default());
            Ok(Response::new(WithTrailers::new("hi", ("grpc-status", "0"))))
        }
    });
    (addr, seen)
}

#[test]
fn trailers_pass_through_the_trailers_callbacks_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("trailers.wat");
    std::fs::write(&module, TRAILER_FILTER).unwrap();
    let (upstream, seen) = h2_upstream();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [t]}}\nclusters:\n  - {{name: app, endpoints: [\"{upstream}\"], http2: true}}\nplugins:\n  - {{name: t, module: {}}}\n",
        module.display()
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (body, trailers) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(weft.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = Request::post("http://trailers.test/rpc")
            .body(WithTrailers::new("request body", ("x-client", "done")))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        (collected.to_bytes(), trailers)
    });
    assert_eq!(body, "hi");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-filter-saw"], "trailers", "{}", weft.log());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["x-client"], "done");
    assert_eq!(seen[0]["x-filter-saw"], "trailers");
}

/// A gRPC service on HTTP/2: `weft.test.Checker/Check` answers
/// `checked:MESSAGE` with status OK, or PERMISSION_DENIED (7) when the
/// message contains `deny`. Records the metadata `x-from` of each call.
fn grpc_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = support::h2_server(None, move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            assert_eq!(req.uri().path(), "/weft.test.Checker/Check");
            assert_eq!(req.headers()["content-type"], "application/grpc");
            assert_eq!(req.headers()["te"], "trailers");
            let from = req.headers()["x-from"].to_str().unwrap().to_string();
            record.lock().unwrap().push(from);
            let body = req.into_body().collect().await?.to_bytes();
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
            let message = String::from_utf8_lossy(&body[5..5 + len as usize]).to_string();
            let (reply, status) = if message.contains("deny") {
                (Vec::new(), "7")
            } else {
                let text = format!("checked:{message}");
                let mut framed = vec![0];
                framed.extend_from_slice(&(text.len() as u32).to_be_bytes());
                framed.extend_from_slice(text.as_bytes());
                (framed, "0")
            };
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", status.parse().unwrap());
            if status != "0" {
                trailers.insert("grpc-message", "not for you".parse().unwrap());
            }
            let body = WithTrailers {
                data: Some(Bytes::from(reply)),
                trailers: Some(trailers),
            };
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            Ok(response)
        }
    });
    (addr, seen)
}

#[test]
fn grpc_call_outs_reach_the_service_and_their_answers_the_filter() {
    let (grpc, seen) = grpc_server();
    let up = support::Upstream::start();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [check]}}\nclusters:\n  - {{name: app, endpoints: [\"{}\"]}}\n  - {{name: grpc, endpoints: [\"{grpc}\"], http2: true}}\nplugins:\n  - {{name: check, module: {}}}\n",
        up.addr,
        support::filter("grpc_check.wasm").display()
    ));
    let got = support::send(weft.addr, "GET", "/orders", &[], "");
    assert_eq!(got.status, 200, "{}", weft.log());
    let upstream_saw = up.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(upstream_saw.headers["x-grpc-said"], "checked:/orders");
    assert_eq!(seen.lock().unwrap().clone(), vec!["grpc-check".to_string()]);

    let got = support::send(weft.addr, "GET", "/deny", &[], "");
    assert_eq!(got.status, 503);
    assert_eq!(got.headers["x-grpc-status"], "7");
    // proxy_get_status gives the status and grpc-message in the callback.
    assert_eq!(got.headers["x-grpc-get-status"], "7");
    assert_eq!(got.headers["x-grpc-message"], "not for you");
}

#[test]
fn a_grpc_call_to_a_dead_service_closes_with_unavailable() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = support::Upstream::start();
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [check]}}\nclusters:\n  - {{name: app, endpoints: [\"{}\"]}}\n  - {{name: grpc, endpoints: [\"{dead}\"], http2: true}}\nplugins:\n  - {{name: check, module: {}}}\n",
        up.addr,
        support::filter("grpc_check.wasm").display()
    ));
    let got = support::send(weft.addr, "GET", "/x", &[], "");
    assert_eq!(got.status, 503);
    assert_eq!(got.headers["x-grpc-status"], "14");
    assert!(up.seen.lock().unwrap().is_empty());
}

/// A response body fed from a channel: frames as the handler makes them.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Frame<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// A streaming gRPC service on HTTP/2: `weft.test.Chat/Talk` answers each
/// message `M` with `echo:M` as soon as it arrives (so answers flow while
/// the client still sends), with `x-server: chat-1` in its headers and,
/// at the end, `x-count` (messages seen) and status OK in its trailers, or
/// PERMISSION_DENIED (7) if a message contained `deny`. Records the
/// metadata `x-from` of each stream.
fn chat_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = support::h2_server(None, move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            assert_eq!(req.uri().path(), "/weft.test.Chat/Talk");
            assert_eq!(req.headers()["content-type"], "application/grpc");
            let from = req.headers()["x-from"].to_str().unwrap().to_string();
            record.lock().unwrap().push(from);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut body = req.into_body();
                let (mut pending, mut count, mut denied) = (Vec::new(), 0, false);
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    pending.extend_from_slice(&data);
                    while pending.len() >= 5 {
                        let len =
                            u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]])
                                as usize;
                        if pending.len() < 5 + len {
                            break;
                        }
                        let message: Vec<u8> = pending.drain(..5 + len).skip(5).collect();
                        count += 1;
                        denied |= String::from_utf8_lossy(&message).contains("deny");
                        let mut reply = b"echo:".to_vec();
                        reply.extend_from_slice(&message);
                        let _ = tx.send(Frame::data(grpc_frame(&reply)));
                    }
                }
                let mut trailers = HeaderMap::new();
                trailers.insert("x-count", count.to_string().parse().unwrap());
                let status = if denied { "7" } else { "0" };
                trailers.insert("grpc-status", status.parse().unwrap());
                if denied {
                    trailers.insert("grpc-message", "not for you".parse().unwrap());
                }
                let _ = tx.send(Frame::trailers(trailers));
            });
            let mut response = Response::new(ChannelBody(rx));
            let headers = response.headers_mut();
            headers.insert("content-type", "application/grpc".parse().unwrap());
            headers.insert("x-server", "chat-1".parse().unwrap());
            Ok(response)
        }
    });
    (addr, seen)
}

fn chat_proxy(grpc: std::net::SocketAddr, up: &support::Upstream) -> Weft {
    Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [talk]}}\nclusters:\n  - {{name: app, endpoints: [\"{}\"]}}\n  - {{name: grpc, endpoints: [\"{grpc}\"], http2: true}}\nplugins:\n  - {{name: talk, module: {}}}\n",
        up.addr,
        support::filter("grpc_stream.wasm").display()
    ))
}

#[test]
fn grpc_streams_carry_messages_both_ways_with_metadata_and_status() {
    let (grpc, seen) = chat_server();
    let up = support::Upstream::start();
    let weft = chat_proxy(grpc, &up);
    for path in ["/a", "/b"] {
        let got = support::send(weft.addr, "GET", path, &[], "");
        assert_eq!(got.status, 200, "{}", weft.log());
        let upstream_saw = up.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            upstream_saw.headers["x-stream-said"],
            format!("echo:one,echo:two,echo:{path}")
        );
        assert_eq!(upstream_saw.headers["x-stream-server"], "chat-1");
        assert_eq!(upstream_saw.headers["x-stream-count"], "3");
    }
    assert_eq!(seen.lock().unwrap().clone(), vec!["grpc-stream"; 2]);

    // A stream that ends with an error status reaches proxy_on_grpc_close
    // with it, and proxy_get_status gives its message.
    let got = support::send(weft.addr, "GET", "/deny", &[], "");
    assert_eq!(got.status, 503, "{}", weft.log());
    assert_eq!(got.headers["x-grpc-status"], "7");
    assert_eq!(got.headers["x-grpc-message"], "not for you");
}

#[test]
fn a_grpc_stream_to_a_dead_service_closes_with_unavailable() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = support::Upstream::start();
    let weft = chat_proxy(dead, &up);
    let got = support::send(weft.addr, "GET", "/x", &[], "");
    assert_eq!(got.status, 503, "{}", weft.log());
    assert_eq!(got.headers["x-grpc-status"], "14");
    assert!(up.seen.lock().unwrap().is_empty());
}

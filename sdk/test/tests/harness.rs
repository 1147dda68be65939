//! The harness on real guests (built into target/filters by `cargo xtask
//! build-filters`): call-outs answered from mocks, ticks, bodies, local
//! replies, failures and failure policies, metrics, logs.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weft_test::{CalloutMock, Filter, Outcome, Request, Response};

fn module(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/filters")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-filters`",
        path.display()
    );
    path
}

#[test]
fn a_call_out_answered_by_a_mock_lets_the_request_through() {
    let mut filter = Filter::load(module("callout_auth")).start().unwrap();
    let exchange = filter
        .send(
            Request::get("/orders")
                .callout("authz", Response::new(200).with_body("alice"))
                .upstream(Response::new(200).with_body("ok")),
        )
        .unwrap();
    assert_eq!(exchange.outcome, Outcome::Forwarded);
    assert_eq!(exchange.callouts.len(), 1);
    assert_eq!(exchange.callouts[0].cluster, "authz");
    assert_eq!(
        exchange.callouts[0].header(":path").as_deref(),
        Some("/check/orders")
    );
    let upstream = exchange.upstream.unwrap();
    assert_eq!(upstream.header("x-auth-said").as_deref(), Some("alice"));
    assert_eq!(exchange.response.text(), "ok");
}

#[test]
fn a_refusing_or_failed_call_out_gets_the_filters_local_reply() {
    let mut filter = Filter::load(module("callout_auth")).start().unwrap();
    let denied = filter
        .send(Request::get("/admin").callout("authz", Response::new(401)))
        .unwrap();
    assert_eq!(denied.outcome, Outcome::LocalReply);
    assert!(denied.upstream.is_none());
    assert_eq!(denied.response.status, 403);
    assert_eq!(
        denied.response.header("x-auth-status").as_deref(),
        Some("401")
    );
    assert_eq!(denied.response.text(), "denied");

    let mut request = Request::get("/x");
    request.callouts.push(CalloutMock {
        cluster: "authz".into(),
        path: None,
        response: None,
        grpc_status: None,
        grpc_message: None,
        messages: Vec::new(),
    });
    let failed = filter.send(request).unwrap();
    assert_eq!(failed.response.status, 403);
    assert_eq!(
        failed.response.header("x-auth-status").as_deref(),
        Some("none")
    );

    // A call no mock answers fails, as one that timed out would.
    let unanswered = filter.send(Request::get("/y")).unwrap();
    assert_eq!(
        unanswered.response.header("x-auth-status").as_deref(),
        Some("none")
    );
}

#[test]
fn a_delay_is_continued_from_ticks_as_time_passes() {
    let mut filter = Filter::load(module("fault"))
        .configuration(r#"{"delay": {"header": "x-fault-delay"}}"#)
        .start()
        .unwrap();
    let start = Instant::now();
    let exchange = filter
        .send(Request::get("/").header("x-fault-delay", "40"))
        .unwrap();
    assert_eq!(exchange.outcome, Outcome::Forwarded);
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(filter.metric("fault.delays_injected"), Some(1));

    // Without ticks the delay never ends.
    let mut request = Request::get("/").header("x-fault-delay", "40");
    request.ticks = 0;
    let exchange = filter.send(request).unwrap();
    assert_eq!(exchange.outcome, Outcome::StillPaused);
    assert!(exchange.upstream.is_none());
}

#[test]
fn bodies_are_filtered_both_ways() {
    let mut filter = Filter::load(module("body_rewriter")).start().unwrap();
    let exchange = filter
        .send(
            Request::new("POST", "/")
                .body("hello")
                .upstream(Response::new(200).with_body("answer")),
        )
        .unwrap();
    assert_eq!(exchange.upstream.unwrap().body, b"HELLO");
    assert_eq!(exchange.response.text(), "answer (filtered)");

    let refused = filter
        .send(Request::new("POST", "/").body("forbidden words"))
        .unwrap();
    assert_eq!(refused.outcome, Outcome::LocalReply);
    assert_eq!(refused.response.status, 403);
}

#[test]
fn a_trap_fails_the_request_as_the_failure_policy_says() {
    let mut closed = Filter::load(module("panicker")).start().unwrap();
    let exchange = closed
        .send(Request::get("/").header("x-panic", "1"))
        .unwrap();
    assert_eq!(exchange.outcome, Outcome::Failed);
    assert_eq!(exchange.response.status, 503);
    assert!(
        exchange.logs.iter().any(|l| l.message.contains("trapped")),
        "{:?}",
        exchange.logs
    );

    let mut open = Filter::load(module("panicker"))
        .fail_open(true)
        .start()
        .unwrap();
    let exchange = open
        .send(
            Request::get("/")
                .header("x-panic", "1")
                .upstream(Response::new(201).with_body("from-upstream")),
        )
        .unwrap();
    assert_eq!(exchange.outcome, Outcome::Failed);
    // As in a proxy, the request goes on without the filter: the upstream
    // gets it and the client gets the upstream's answer.
    let upstream = exchange.upstream.expect("the request reached the upstream");
    assert!(
        upstream
            .headers
            .iter()
            .any(|(k, v)| k == "x-panic" && v == "1")
    );
    assert_eq!(exchange.response.status, 201);
    assert_eq!(exchange.response.body, b"from-upstream");
}

#[test]
fn configuration_is_checked_at_start_and_logs_are_kept() {
    let refused = Filter::load(module("hello_rust"))
        .configuration("not json")
        .start();
    assert!(refused.is_err());

    let mut filter = Filter::load(module("hello_rust"))
        .configuration(r#"{"header": "x-hello", "value": "world"}"#)
        .start()
        .unwrap();
    let exchange = filter.send(Request::get("/a")).unwrap();
    assert_eq!(
        exchange.response.header("x-hello").as_deref(),
        Some("world")
    );
    assert!(
        exchange
            .logs
            .iter()
            .any(|l| l.from_filter && l.level == "info" && l.message.contains("GET /a")),
        "{:?}",
        exchange.logs
    );
}

#[test]
fn grpc_calls_are_answered_from_mocks() {
    let mut filter = Filter::load(module("grpc_check")).start().unwrap();
    let ok = filter
        .send(Request::get("/items").callout("grpc", Response::new(200).with_body("fine")))
        .unwrap();
    assert_eq!(ok.outcome, Outcome::Forwarded);
    assert_eq!(ok.callouts[0].cluster, "grpc");
    assert_eq!(
        ok.callouts[0].header(":path").as_deref(),
        Some("/weft.test.Checker/Check")
    );
    assert_eq!(
        ok.callouts[0].header("x-from").as_deref(),
        Some("grpc-check")
    );
    assert_eq!(ok.callouts[0].body, b"/items");
    assert_eq!(
        ok.upstream.unwrap().header("x-grpc-said").as_deref(),
        Some("fine")
    );

    let mut request = Request::get("/items");
    request.callouts.push(CalloutMock {
        cluster: "grpc".into(),
        path: Some("/weft.test.Checker/Check".into()),
        response: Some(Response::new(200)),
        grpc_status: Some(7),
        grpc_message: Some("denied".into()),
        messages: Vec::new(),
    });
    let refused = filter.send(request).unwrap();
    assert_eq!(refused.outcome, Outcome::LocalReply);
    assert_eq!(refused.response.status, 503);
    assert_eq!(
        refused.response.header("x-grpc-status").as_deref(),
        Some("7")
    );
    assert_eq!(
        refused.response.header("x-grpc-message").as_deref(),
        Some("denied")
    );

    // No mock: UNAVAILABLE.
    let unanswered = filter.send(Request::get("/items")).unwrap();
    assert_eq!(
        unanswered.response.header("x-grpc-status").as_deref(),
        Some("14")
    );
}

#[test]
fn grpc_streams_are_answered_from_mocks_message_by_message() {
    let mut filter = Filter::load(module("grpc_stream")).start().unwrap();
    let mut request = Request::get("/items");
    request.callouts.push(CalloutMock {
        cluster: "grpc".into(),
        path: Some("/weft.test.Chat/Talk".into()),
        response: Some(
            Response::new(200)
                .with_header("x-server", "mock")
                .with_trailer("x-count", "2"),
        ),
        messages: vec![b"first".to_vec(), b"second".to_vec()],
        ..CalloutMock::default()
    });
    let ok = filter.send(request).unwrap();
    assert_eq!(ok.outcome, Outcome::Forwarded);
    // What the filter sent on the stream: its three messages, in order.
    assert_eq!(ok.callouts[0].body, b"onetwo/items");
    assert_eq!(
        ok.callouts[0].header("x-from").as_deref(),
        Some("grpc-stream")
    );
    let upstream = ok.upstream.unwrap();
    assert_eq!(
        upstream.header("x-stream-said").as_deref(),
        Some("first,second")
    );
    assert_eq!(upstream.header("x-stream-server").as_deref(), Some("mock"));
    assert_eq!(upstream.header("x-stream-count").as_deref(), Some("2"));

    // No mock: the stream closes UNAVAILABLE.
    let unanswered = filter.send(Request::get("/items")).unwrap();
    assert_eq!(
        unanswered.response.header("x-grpc-status").as_deref(),
        Some("14")
    );
}

#[test]
fn tcp_connections_run_the_tcp_callbacks() {
    let mut filter = Filter::load(module("tcp_tap")).start().unwrap();
    let mut request = Request::get("/");
    request.connection = Some(weft_test::Connection {
        downstream: vec![b"he".to_vec(), b"llo".to_vec()],
        upstream: vec![b"echo".to_vec()],
    });
    let relayed = filter.send(request).unwrap();
    assert_eq!(relayed.outcome, Outcome::Forwarded);
    let data = relayed.relayed.unwrap();
    assert_eq!(data.upstream, b"[tap]hello");
    assert_eq!(data.downstream, b"ECHO");
    let logged: Vec<&str> = relayed.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(logged.contains(&"tcp-tap: waiting, 2 bytes"), "{logged:?}");
    assert!(
        logged.contains(&"tcp-tap: 5 bytes down, 4 bytes up"),
        "{logged:?}"
    );

    let mut request = Request::get("/");
    request.connection = Some(weft_test::Connection {
        downstream: vec![b"DENY".to_vec()],
        upstream: Vec::new(),
    });
    let denied = filter.send(request).unwrap();
    assert_eq!(denied.outcome, Outcome::Closed);
    assert!(denied.relayed.unwrap().upstream.is_empty());
}

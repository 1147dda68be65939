//! TLS and HTTP/2 end to end: termination with SNI, h2 by ALPN and by
//! prior knowledge, mTLS with the client's identity as properties,
//! certificate reload, and TLS + h2 to the upstream. Certificates are made
//! in the test with rcgen.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::pki::{Pki, get_tls};
use support::{PROPERTY_ECHO, Upstream, Weft, served_by};

fn tls_listener(pki: &Pki, extra: &str, cluster_addr: std::net::SocketAddr) -> String {
    let a = pki.issue("a", &["a.test"], None);
    let b = pki.issue("b", &["b.test", "*.b.test"], None);
    format!(
        r#"
workers: 1
listeners:
  - name: tls
    address: 127.0.0.1:0
    cluster: app
    tls:
      certificates:
        - {{cert: {}, key: {}, server_names: [a.test]}}
        - {{cert: {}, key: {}, server_names: ["*.b.test", b.test]}}
      reload_interval_ms: 100
{extra}
clusters:
  - {{name: app, endpoints: ["{cluster_addr}"]}}
"#,
        a.0.display(),
        a.1.display(),
        b.0.display(),
        b.1.display(),
    )
}

#[test]
fn tls_termination_picks_the_certificate_by_sni_and_speaks_h2_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let up = Upstream::start();
    let weft = Weft::proxy(&tls_listener(&pki, "", up.addr));

    // Verification against each name proves the right certificate was sent.
    for name in ["a.test", "b.test", "x.b.test"] {
        let got = get_tls(weft.addr, name, pki.client(None, &[b"http/1.1"]), "/p", &[]).unwrap();
        assert_eq!(got.got.status, 200, "{name}");
        assert_eq!(got.version, http::Version::HTTP_11);
    }
    let got = get_tls(
        weft.addr,
        "a.test",
        pki.client(None, &[b"h2", b"http/1.1"]),
        "/h2?x=1",
        &[],
    )
    .unwrap();
    assert_eq!(got.version, http::Version::HTTP_2);
    assert_eq!(
        (got.got.status, got.got.body.as_str()),
        (200, "upstream says hi")
    );
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/h2?x=1");
    assert_eq!(seen.headers["host"], "a.test", "h2 :authority becomes Host");

    // An unknown name gets the first certificate, which does not verify.
    let err = get_tls(weft.addr, "c.test", pki.client(None, &[]), "/", &[])
        .err()
        .unwrap();
    assert!(err.contains("handshake"), "{err}");
}

#[test]
fn changed_certificate_files_are_loaded_without_restart_and_bad_ones_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let up = Upstream::start();
    let weft = Weft::proxy(&tls_listener(&pki, "", up.addr));
    let before = get_tls(weft.addr, "a.test", pki.client(None, &[]), "/", &[]).unwrap();

    // A broken key: the old pair stays.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("a.key"), "not a key").unwrap();
    weft.wait_for_log("certificate not reloaded, the old one stays");
    let still = get_tls(weft.addr, "a.test", pki.client(None, &[]), "/", &[]).unwrap();
    assert_eq!(still.server_cert, before.server_cert);

    // A good new pair is picked up.
    std::thread::sleep(Duration::from_millis(20));
    pki.issue("a", &["a.test"], None);
    let now = support::eventually(Duration::from_secs(10), || {
        let now = get_tls(weft.addr, "a.test", pki.client(None, &[]), "/", &[]).unwrap();
        if now.server_cert != before.server_cert {
            Ok(now)
        } else {
            Err("the new certificate was never served".to_string())
        }
    });
    assert_eq!(now.got.status, 200);
    weft.wait_for_log("certificate reloaded");
}

#[test]
fn mtls_refuses_clients_without_a_certificate_and_exposes_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let module = dir.path().join("props.wat");
    std::fs::write(&module, PROPERTY_ECHO).unwrap();
    let up = Upstream::start();
    let config = tls_listener(
        &pki,
        &format!(
            "      client_ca: {}\n    filters: [props]\nplugins:\n  - {{name: props, module: {}}}",
            pki.ca_file().display(),
            module.display()
        ),
        up.addr,
    );
    let weft = Weft::proxy(&config);

    let refused = get_tls(
        weft.addr,
        "a.test",
        pki.client(None, &[]),
        "/",
        &[("x-want", "request.path")],
    );
    assert!(refused.is_err(), "a client without a certificate got in");

    let client = pki.issue(
        "client",
        &["client.test"],
        Some("spiffe://weft.test/ns/default/sa/client"),
    );
    let property = |name: &str| {
        let got = get_tls(
            weft.addr,
            "a.test",
            pki.client(Some(&client), &[]),
            "/",
            &[("x-want", name)],
        )
        .unwrap();
        (got.got.status, got.got.body)
    };
    assert_eq!(property("connection.mtls"), (200, "\u{1}".to_string()));
    assert_eq!(
        property("connection.uri_san_peer_certificate"),
        (200, "spiffe://weft.test/ns/default/sa/client".to_string())
    );
    assert_eq!(
        property("connection.dns_san_peer_certificate"),
        (200, "client.test".to_string())
    );
    assert_eq!(
        property("connection.subject_peer_certificate"),
        (200, "CN=client".to_string())
    );
    assert_eq!(
        property("connection.requested_server_name"),
        (200, "a.test".to_string())
    );
    assert_eq!(property("request.scheme"), (200, "https".to_string()));
    let (status, digest) = property("connection.sha256_peer_certificate_digest");
    assert_eq!((status, digest.len()), (200, 64));
}

#[test]
fn h2_by_prior_knowledge_on_plain_tcp() {
    let up = Upstream::named("plain");
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: app}}\nclusters:\n  - {{name: app, endpoints: [\"{}\"]}}\n",
        up.addr
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (version, by, statuses) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(weft.addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        // Several streams at once on the one connection.
        let mut tasks = Vec::new();
        for i in 0..10 {
            let mut sender = sender.clone();
            tasks.push(tokio::spawn(async move {
                let request = Request::get(format!("http://h2.test/s/{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                let version = response.version();
                let by = response.headers()["x-served-by"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let status = response.status().as_u16();
                response.into_body().collect().await.unwrap();
                (version, by, status)
            }));
        }
        let mut statuses = Vec::new();
        let mut last = None;
        for task in tasks {
            let (version, by, status) = task.await.unwrap();
            statuses.push(status);
            last = Some((version, by));
        }
        let (version, by) = last.unwrap();
        (version, by, statuses)
    });
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(by, "plain");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.len(), 10);
    // Sent upstream over HTTP/1.1: `:authority` becomes the Host, the
    // path is the request target's.
    for request in seen.iter() {
        assert_eq!(request.headers["host"], "h2.test");
        assert!(request.path.starts_with("/s/"), "{}", request.path);
    }
}

/// Each request's HTTP version and authority, as an upstream saw them.
type SeenVersions = Arc<Mutex<Vec<(http::Version, String)>>>;

/// An upstream speaking HTTP/2 over TLS only; records each request's
/// version and Host/authority.
fn tls_h2_upstream(pki: &Pki) -> (std::net::SocketAddr, SeenVersions) {
    let cert = pki.issue("upstream", &["upstream.test"], None);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let addr = support::h2_server(
        Some(pki.server(&cert, &[b"h2"])),
        move |req: Request<hyper::body::Incoming>| {
            let record = record.clone();
            async move {
                let authority = req
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                record.lock().unwrap().push((req.version(), authority));
                let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"over h2")));
                response
                    .headers_mut()
                    .insert("x-served-by", "tls-h2".parse().unwrap());
                Ok(response)
            }
        },
    );
    (addr, seen)
}

#[test]
fn upstream_tls_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (addr, seen) = tls_h2_upstream(&pki);
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - {{name: l, address: 127.0.0.1:0, cluster: secure}}
clusters:
  - name: secure
    endpoints: ["{addr}"]
    http2: true
    tls: {{server_name: upstream.test, ca: {}}}
"#,
        pki.ca_file().display()
    ));
    for _ in 0..3 {
        let got = support::send(weft.addr, "GET", "/x", &[], "");
        assert_eq!(
            (got.status, served_by(&got).as_str(), got.body.as_str()),
            (200, "tls-h2", "over h2")
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|(v, a)| *v == http::Version::HTTP_2 && a == "test.weft"),
        "{seen:?}"
    );

    // A CA the upstream's certificate does not chain to: refused, 502.
    let other = tempfile::tempdir().unwrap();
    let other_pki = Pki::new(other.path());
    let weft = Weft::proxy(&format!(
        "workers: 1\nlisteners:\n  - {{name: l, address: 127.0.0.1:0, cluster: secure}}\nclusters:\n  - {{name: secure, endpoints: [\"{addr}\"], http2: true, tls: {{server_name: upstream.test, ca: {}}}}}\n",
        other_pki.ca_file().display()
    ));
    let got = support::send(weft.addr, "GET", "/x", &[], "");
    assert_eq!(got.status, 502);
    assert!(weft.log().contains("TLS with"), "{}", weft.log());
}

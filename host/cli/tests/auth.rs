//! The auth filter (filters/auth) in a real `weft proxy`: JWTs (ES256 and
//! RS256 with keys fetched as a JWKS from a real issuer server through a
//! call-out, HS256 inline), expiry, bad signatures, audiences, API keys,
//! allow/deny rules, forwarded claims. Tokens are signed in the test with
//! ring; the RSA key is a fixture (ring cannot generate one).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::Full;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use support::{Upstream, Weft, filter, send};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signing keys and their public JWKS.
struct Keys {
    es: EcdsaKeyPair,
    rs: RsaKeyPair,
    jwks: String,
}

fn keys() -> Keys {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let es = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    let point = es.public_key().as_ref();
    let rs = RsaKeyPair::from_der(include_bytes!("fixtures/rsa2048.der")).unwrap();
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rs.public());
    let jwks = serde_json::json!({"keys": [
        {"kid": "es", "kty": "EC", "crv": "P-256", "alg": "ES256",
         "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])},
        {"kid": "rs", "kty": "RSA", "alg": "RS256", "n": B64.encode(&public.n), "e": B64.encode(&public.e)},
    ]})
    .to_string();
    Keys { es, rs, jwks }
}

fn token(
    alg: &str,
    kid: &str,
    claims: serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let header = B64.encode(serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
    let payload = B64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = B64.encode(sign(signed.as_bytes()));
    format!("{signed}.{signature}")
}

fn es256(keys: &Keys, claims: serde_json::Value) -> String {
    token("ES256", "es", claims, |m| {
        keys.es
            .sign(&SystemRandom::new(), m)
            .unwrap()
            .as_ref()
            .to_vec()
    })
}

fn rs256(keys: &Keys, claims: serde_json::Value) -> String {
    token("RS256", "rs", claims, |m| {
        let mut out = vec![0; keys.rs.public().modulus_len()];
        keys.rs
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                m,
                &mut out,
            )
            .unwrap();
        out
    })
}

fn claims(sub: &str, role: &str, exp: u64) -> serde_json::Value {
    serde_json::json!({"iss": "https://issuer.test", "aud": ["shop"], "sub": sub, "role": role, "exp": exp})
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn jwts_from_a_fetched_jwks_api_keys_and_rules() {
    let keys = keys();
    let fetched = Arc::new(AtomicUsize::new(0));
    let count = fetched.clone();
    let jwks = keys.jwks.clone();
    let issuer = support::h2_server(None, move |req: hyper::Request<hyper::body::Incoming>| {
        count.fetch_add(1, Ordering::SeqCst);
        assert_eq!(req.uri().path(), "/.well-known/jwks.json");
        let body = jwks.clone();
        async move { Ok(hyper::Response::new(Full::new(Bytes::from(body)))) }
    });
    let up = Upstream::start();
    let ci_key_hash = ring::digest::digest(&ring::digest::SHA256, b"ci-secret-key")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [auth]}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
  - {{name: issuer, endpoints: ["{issuer}"], http2: true}}
plugins:
  - name: auth
    module: {}
    allowed_clusters: [issuer]
    configuration:
      jwt:
        issuer: https://issuer.test
        audiences: [shop]
        required_claims: [sub]
        jwks_cluster: issuer
        forward_claims: {{sub: x-user, role: x-role}}
      api_keys:
        keys: [{{name: ci, sha256: {ci_key_hash}}}]
      rules:
        - {{deny: true, claims: {{role: guest}}, path_prefix: /admin}}
        - {{deny: true, principals: [ci], methods: [DELETE]}}
"#,
        up.addr,
        filter("auth.wasm").display()
    ));
    let call = |headers: &[(&str, &str)], method: &str, path: &str| {
        send(weft.addr, method, path, headers, "")
    };

    let got = call(&[], "GET", "/");
    assert_eq!(got.status, 401);
    let challenge = got.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"weft\""),
        "{challenge}"
    );

    let alice = es256(&keys, claims("alice", "admin", now() + 300));
    let got = call(&[("authorization", &bearer(&alice))], "GET", "/admin/x");
    assert_eq!(got.status, 200, "{}", weft.log());
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.headers["x-user"], "alice");
    assert_eq!(seen.headers["x-role"], "admin");
    assert_eq!(seen.headers["x-weft-principal"], "alice");

    let bob = rs256(&keys, claims("bob", "admin", now() + 300));
    assert_eq!(
        call(&[("authorization", &bearer(&bob))], "GET", "/").status,
        200
    );

    let reason = |token: &str| {
        let got = call(&[("authorization", &bearer(token))], "GET", "/");
        assert_eq!(got.status, 401);
        got.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string()
    };
    // Expired beyond the 60 s skew; within it, still good.
    assert!(reason(&es256(&keys, claims("c", "admin", now() - 120))).contains("expired"));
    assert_eq!(
        call(
            &[(
                "authorization",
                &bearer(&es256(&keys, claims("c", "admin", now() - 10)))
            )],
            "GET",
            "/"
        )
        .status,
        200
    );
    // Signed by another key under the same kid.
    let other = keys_other();
    let forged = token(
        "ES256",
        "es",
        claims("mallory", "admin", now() + 300),
        |m| {
            other
                .sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        },
    );
    assert!(reason(&forged).contains("signature"));
    let wrong_aud = es256(
        &keys,
        serde_json::json!({"iss": "https://issuer.test", "aud": "other", "sub": "x", "exp": now() + 300}),
    );
    assert!(reason(&wrong_aud).contains("audience"));
    let no_sub = es256(
        &keys,
        serde_json::json!({"iss": "https://issuer.test", "aud": "shop", "exp": now() + 300}),
    );
    assert!(reason(&no_sub).contains("`sub`"));
    assert!(
        reason("not.a-token").contains("base64url") || reason("not.a-token").contains("compact")
    );

    // Rules: a guest may not reach /admin.
    let guest = es256(&keys, claims("gus", "guest", now() + 300));
    assert_eq!(
        call(&[("authorization", &bearer(&guest))], "GET", "/admin/panel").status,
        403
    );
    assert_eq!(
        call(&[("authorization", &bearer(&guest))], "GET", "/shop").status,
        200
    );

    // API keys.
    let got = call(&[("x-api-key", "ci-secret-key")], "GET", "/");
    assert_eq!(got.status, 200);
    assert_eq!(
        up.seen.lock().unwrap().last().unwrap().headers["x-weft-principal"],
        "ci"
    );
    assert_eq!(
        call(&[("x-api-key", "ci-secret-key")], "DELETE", "/x").status,
        403
    );
    assert_eq!(call(&[("x-api-key", "guess")], "GET", "/").status, 401);

    assert_eq!(
        fetched.load(Ordering::SeqCst),
        1,
        "the JWKS is fetched once and cached"
    );
}

fn keys_other() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap()
}

#[test]
fn hs256_with_inline_keys() {
    let secret = b"a shared secret of enough length!";
    let up = Upstream::start();
    let weft = Weft::proxy(&format!(
        r#"
workers: 1
listeners:
  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [auth]}}
clusters:
  - {{name: app, endpoints: ["{}"]}}
plugins:
  - name: auth
    module: {}
    configuration:
      jwt: {{jwks: {{keys: [{{kty: oct, kid: h, alg: HS256, k: "{}"}}]}}}}
"#,
        up.addr,
        filter("auth.wasm").display(),
        B64.encode(secret)
    ));
    let hs = |key: &[u8]| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        token(
            "HS256",
            "h",
            serde_json::json!({"sub": "h", "exp": now() + 60}),
            |m| ring::hmac::sign(&key, m).as_ref().to_vec(),
        )
    };
    assert_eq!(
        send(
            weft.addr,
            "GET",
            "/",
            &[("authorization", &bearer(&hs(secret)))],
            ""
        )
        .status,
        200
    );
    assert_eq!(
        send(
            weft.addr,
            "GET",
            "/",
            &[("authorization", &bearer(&hs(b"wrong")))],
            ""
        )
        .status,
        401
    );
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let up = Upstream::start();
    let stderr = support::refused(&support::one_plugin_config(
        up.addr,
        "auth",
        "auth.wasm",
        "{api_keys: {keys: [{name: k, sha256: nothex}]}}",
    ));
    assert!(
        stderr.contains("`api_keys.keys[0].sha256`: not 64 hex digits"),
        "{stderr}"
    );
}

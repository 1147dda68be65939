//! auth: authentication and authorization as a proxy-wasm filter.
//!
//! A request is authenticated by an API key (compared by SHA-256), a JWT
//! bearer token (HS256, RS256, ES256; keys inline or a JWKS fetched from
//! an issuer cluster with `proxy_http_call` and cached in shared data), or
//! the mTLS peer identity; then ordered allow/deny rules decide. Failures
//! get 401 with `WWW-Authenticate` or 403. See README.md.

mod jwt;

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use serde::Deserialize;
use serde_json::Value;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Auth::default()) });
}}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    jwt: Option<JwtConfig>,
    #[serde(default)]
    api_keys: Option<ApiKeys>,
    /// Tried in order; the first that matches decides. None matches:
    /// `default`.
    #[serde(default)]
    rules: Vec<Rule>,
    /// What happens when no rule matches: `allow` (an authenticated
    /// request) or `deny`.
    #[serde(default)]
    default: Decision,
    /// Let requests without credentials reach the rules (as principal
    /// `anonymous`) instead of answering 401.
    #[serde(default)]
    allow_anonymous: bool,
}

fn default_realm() -> String {
    "weft".into()
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Decision {
    #[default]
    Allow,
    Deny,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct JwtConfig {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_skew")]
    clock_skew_s: u64,
    #[serde(default)]
    required_claims: Vec<String>,
    /// Keys given inline, as a JWK Set.
    #[serde(default)]
    jwks: Option<jwt::Jwks>,
    /// Or fetched: `GET jwks_path` on this cluster.
    #[serde(default)]
    jwks_cluster: Option<String>,
    #[serde(default = "default_jwks_path")]
    jwks_path: String,
    /// How long a fetched JWKS is used before it is fetched again.
    #[serde(default = "default_jwks_refresh")]
    jwks_refresh_s: u64,
    /// Claim → request header to copy it to.
    #[serde(default)]
    forward_claims: std::collections::BTreeMap<String, String>,
    /// The claim that names the principal.
    #[serde(default = "default_principal_claim")]
    principal_claim: String,
}

fn default_skew() -> u64 {
    60
}

fn default_jwks_path() -> String {
    "/.well-known/jwks.json".into()
}

fn default_jwks_refresh() -> u64 {
    300
}

fn default_principal_claim() -> String {
    "sub".into()
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct ApiKeys {
    #[serde(default = "default_api_key_header")]
    header: String,
    keys: Vec<ApiKey>,
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct ApiKey {
    /// The principal it stands for.
    name: String,
    /// SHA-256 of the key, hex.
    sha256: String,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    allow: bool,
    #[serde(default)]
    deny: bool,
    /// The principal is one of these (`sub` of a JWT, an API key's name,
    /// `anonymous`).
    #[serde(default)]
    principals: Vec<String>,
    /// Claim → required value (strings, or a member of an array claim).
    #[serde(default)]
    claims: std::collections::BTreeMap<String, String>,
    /// The mTLS peer's URI SAN is one of these.
    #[serde(default)]
    peers: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    path_prefix: Option<String>,
}

impl Config {
    fn check(&self) -> Result<(), String> {
        if self.jwt.is_none()
            && self.api_keys.is_none()
            && !self.allow_anonymous
            && self.rules.is_empty()
        {
            return Err("give `jwt`, `api_keys`, or `rules` with `allow_anonymous`".into());
        }
        if let Some(jwt) = &self.jwt {
            if jwt.jwks.is_none() == jwt.jwks_cluster.is_none() {
                return Err(
                    "`jwt`: give exactly one of `jwks` (inline keys) and `jwks_cluster`".into(),
                );
            }
            if let Some(jwks) = &jwt.jwks {
                if jwks.keys.is_empty() {
                    return Err("`jwt.jwks.keys`: list at least one key".into());
                }
            }
            if jwt.jwks_refresh_s == 0 {
                return Err("`jwt.jwks_refresh_s`: must be at least 1".into());
            }
        }
        if let Some(api) = &self.api_keys {
            for (i, key) in api.keys.iter().enumerate() {
                let ok =
                    key.sha256.len() == 64 && key.sha256.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(format!("`api_keys.keys[{i}].sha256`: not 64 hex digits"));
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.allow == rule.deny {
                return Err(format!(
                    "`rules[{i}]`: give exactly one of `allow: true` and `deny: true`"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Auth {
    config: Rc<Config>,
    metrics: Rc<[u32; 3]>,
}

impl Context for Auth {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        // A refresh the root context started.
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        if let Some(jwt) = &self.config.jwt {
            store_jwks(jwt, &body, self.now_s());
        }
    }
}

impl Auth {
    fn now_s(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Where a fetched JWKS is cached (shared by every VM of the plugin's vm_id).
fn jwks_key(jwt: &JwtConfig) -> String {
    format!(
        "weft.auth.jwks.{}",
        jwt.jwks_cluster.as_deref().unwrap_or_default()
    )
}

/// Caches a fetched JWKS with the time it was fetched; false if it does
/// not parse.
fn store_jwks(jwt: &JwtConfig, body: &[u8], now_s: u64) -> bool {
    if serde_json::from_slice::<jwt::Jwks>(body).is_err() {
        log::warn!(
            "auth: the JWKS from cluster {:?} does not parse; keeping the old one",
            jwt.jwks_cluster
        );
        return false;
    }
    let mut value = now_s.to_le_bytes().to_vec();
    value.extend_from_slice(body);
    let _ = proxy_wasm::hostcalls::set_shared_data(&jwks_key(jwt), Some(&value), None);
    true
}

/// The cached JWKS and when it was fetched.
fn cached_jwks(jwt: &JwtConfig) -> Option<(jwt::Jwks, u64)> {
    let (value, _) = proxy_wasm::hostcalls::get_shared_data(&jwks_key(jwt)).ok()?;
    let value = value?;
    let fetched = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    Some((serde_json::from_slice(&value[8..]).ok()?, fetched))
}

fn fetch_jwks(context: &dyn Context, jwt: &JwtConfig) -> Option<u32> {
    let cluster = jwt.jwks_cluster.as_deref()?;
    let headers = vec![
        (":method", "GET"),
        (":path", jwt.jwks_path.as_str()),
        (":authority", cluster),
    ];
    match context.dispatch_http_call(cluster, headers, None, vec![], Duration::from_secs(5)) {
        Ok(token) => Some(token),
        Err(status) => {
            log::warn!("auth: cannot fetch the JWKS from {cluster}: {status:?}");
            None
        }
    }
}

impl RootContext for Auth {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = match serde_json::from_slice(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log::error!("auth: invalid configuration: {err}");
                return false;
            }
        };
        if let Err(problem) = config.check() {
            log::error!("auth: invalid configuration: {problem}");
            return false;
        }
        let define = |n: &str| proxy_wasm::hostcalls::define_metric(MetricType::Counter, n);
        match (
            define("auth.allowed"),
            define("auth.unauthenticated"),
            define("auth.denied"),
        ) {
            (Ok(a), Ok(b), Ok(c)) => self.metrics = Rc::new([a, b, c]),
            _ => return false,
        }
        if let Some(jwt) = &config.jwt {
            if jwt.jwks_cluster.is_some() {
                self.set_tick_period(Duration::from_secs(jwt.jwks_refresh_s));
            }
        }
        self.config = Rc::new(config);
        true
    }

    fn on_tick(&mut self) {
        if let Some(jwt) = self.config.jwt.clone() {
            fetch_jwks(self, &jwt);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Check {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            token: None,
        }))
    }
}

struct Check {
    config: Rc<Config>,
    metrics: Rc<[u32; 3]>,
    /// The bearer token, while the JWKS is being fetched.
    token: Option<String>,
}

/// Who made the request.
struct Identity {
    principal: String,
    claims: Value,
}

impl Check {
    fn now_s(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn unauthenticated(&self, reason: &str) -> Action {
        let _ = proxy_wasm::hostcalls::increment_metric(self.metrics[1], 1);
        let challenge = format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
            self.config.realm,
            reason.replace('"', "'")
        );
        self.send_http_response(
            401,
            vec![("www-authenticate", challenge.as_str())],
            Some(b"unauthenticated\n"),
        );
        Action::Pause
    }

    /// The rules' verdict on an authenticated request.
    fn authorize(&self, identity: Identity) -> Action {
        // Read from the host only when a rule looks at them, once.
        let method = std::cell::OnceCell::new();
        let method =
            || method.get_or_init(|| self.get_http_request_header(":method").unwrap_or_default());
        let path = std::cell::OnceCell::new();
        let path =
            || path.get_or_init(|| self.get_http_request_header(":path").unwrap_or_default());
        let peer = std::cell::OnceCell::new();
        let peer = || {
            peer.get_or_init(|| {
                self.get_property(vec!["connection", "uri_san_peer_certificate"])
                    .map(|p| String::from_utf8_lossy(&p).into_owned())
            })
        };
        let decision = self
            .config
            .rules
            .iter()
            .find(|rule| {
                (rule.principals.is_empty() || rule.principals.contains(&identity.principal))
                    && rule
                        .claims
                        .iter()
                        .all(|(claim, want)| match &identity.claims[claim] {
                            Value::String(s) => s == want,
                            Value::Array(items) => items.iter().any(|i| i.as_str() == Some(want)),
                            other => other.to_string() == *want,
                        })
                    && (rule.peers.is_empty()
                        || peer().as_ref().map_or(false, |p| rule.peers.contains(p)))
                    && (rule.methods.is_empty()
                        || rule
                            .methods
                            .iter()
                            .any(|m| m.eq_ignore_ascii_case(method())))
                    && rule
                        .path_prefix
                        .as_ref()
                        .map_or(true, |p| path().starts_with(p.as_str()))
            })
            .map_or(self.config.default, |rule| {
                if rule.allow {
                    Decision::Allow
                } else {
                    Decision::Deny
                }
            });
        if decision == Decision::Deny {
            let _ = proxy_wasm::hostcalls::increment_metric(self.metrics[2], 1);
            self.send_http_response(403, vec![], Some(b"forbidden\n"));
            return Action::Pause;
        }
        let _ = proxy_wasm::hostcalls::increment_metric(self.metrics[0], 1);
        if let Some(jwt) = &self.config.jwt {
            for (claim, header) in &jwt.forward_claims {
                let value = match &identity.claims[claim] {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                };
                // A client's own header of that name never reaches the
                // upstream: it would pass for a verified claim.
                self.set_http_request_header(header, value.as_deref());
            }
        }
        self.set_http_request_header("x-weft-principal", Some(&identity.principal));
        Action::Continue
    }

    /// Verifies a bearer token with the keys at hand.
    fn verify(&self, token: &str, keys: &jwt::Jwks) -> Result<Identity, String> {
        let Some(jwt) = &self.config.jwt else {
            return Err("bearer tokens are not accepted here".into());
        };
        let expect = jwt::Expect {
            issuer: jwt.issuer.as_deref(),
            audiences: &jwt.audiences,
            clock_skew_s: jwt.clock_skew_s,
            required_claims: &jwt.required_claims,
            now_s: self.now_s(),
        };
        let claims = jwt::verify(token, keys, &expect)?;
        let principal = claims[jwt.principal_claim.as_str()]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        Ok(Identity { principal, claims })
    }

    fn with_token(&mut self, token: String) -> Action {
        let Some(jwt) = self.config.jwt.clone() else {
            return self.unauthenticated("bearer tokens are not accepted here");
        };
        let keys = match &jwt.jwks {
            Some(inline) => inline.clone(),
            None => match cached_jwks(&jwt) {
                Some((keys, _)) => keys,
                None => {
                    // First use: fetch the keys, then decide.
                    if fetch_jwks(self, &jwt).is_none() {
                        return self.unauthenticated("the issuer's keys are not available");
                    }
                    self.token = Some(token);
                    return Action::Pause;
                }
            },
        };
        match self.verify(&token, &keys) {
            Ok(identity) => self.authorize(identity),
            Err(reason) => self.unauthenticated(&reason),
        }
    }
}

impl Context for Check {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let (Some(jwt), Some(token)) = (self.config.jwt.clone(), self.token.take()) else {
            return;
        };
        if !store_jwks(&jwt, &body, self.now_s()) {
            self.unauthenticated("the issuer's keys are not available");
            return;
        }
        if let Action::Continue = self.with_token(token) {
            self.resume_http_request();
        }
    }
}

impl HttpContext for Check {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(api) = &self.config.api_keys {
            if let Some(key) = self.get_http_request_header(&api.header) {
                let hash = jwt::sha256_hex(key.as_bytes());
                return match api
                    .keys
                    .iter()
                    .find(|k| k.sha256.eq_ignore_ascii_case(&hash))
                {
                    Some(known) => {
                        let identity = Identity {
                            principal: known.name.clone(),
                            claims: Value::Null,
                        };
                        self.authorize(identity)
                    }
                    None => self.unauthenticated("the API key is not known"),
                };
            }
        }
        let bearer = self
            .get_http_request_header("authorization")
            .and_then(|h| h.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
        if let Some(token) = bearer {
            return self.with_token(token);
        }
        if self.config.allow_anonymous {
            return self.authorize(Identity {
                principal: "anonymous".into(),
                claims: Value::Null,
            });
        }
        self.unauthenticated("no credentials")
    }
}

//! Listeners and their routing tables. A listener's settings are compiled
//! once from the configuration; its routing table (virtual hosts, routes,
//! filter chains) is compiled from the configuration at start and again
//! when a bundle changes it, and shared read-only by every worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use regex::Regex;
use weft_config::{HeaderMutation, ProxyConfig, RetryOn, RouteMatch, ValueMatch};

/// A listener's settings (its routes are in a [`RouteTable`]).
pub(crate) struct ListenerRoutes {
    pub(crate) name: String,
    pub(crate) limits: weft_config::ListenerLimits,
    /// Whether HTTP/2 is accepted.
    pub(crate) http2: bool,
    /// TLS termination, when configured.
    pub(crate) tls: Option<crate::tls::ServerTls>,
    /// Position in the configuration's `listeners`.
    pub(crate) index: usize,
    pub(crate) stats: Arc<crate::observe::ListenerStats>,
    pub(crate) request_id: bool,
    pub(crate) traceparent: bool,
    /// `protocol: tcp`: connections are relayed, not served as HTTP.
    pub(crate) tcp: bool,
}

/// A listener's virtual hosts and routes.
pub(crate) struct RouteTable {
    exact: HashMap<String, usize>,
    /// `*.example.com` as `.example.com`, longest first.
    suffixes: Vec<(String, usize)>,
    /// `api.*` as `api.`, longest first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
    vhosts: Vec<Vec<Arc<Route>>>,
}

/// One route, ready to use.
pub(crate) struct Route {
    /// `VHOST/NAME`: the `route_name` property and what logs say.
    pub(crate) name: String,
    path: PathMatch,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, Condition)>,
    query: Vec<(String, Condition)>,
    pub(crate) action: Action,
    /// The plugins run on this route, in order.
    pub(crate) chain: Arc<[usize]>,
    pub(crate) request_headers: Mutation,
    pub(crate) response_headers: Mutation,
}

enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

struct Condition {
    test: Test,
    invert: bool,
}

enum Test {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
    Present(bool),
}

impl Condition {
    fn new(m: &ValueMatch) -> Result<Condition, regex::Error> {
        let test = if let Some(v) = &m.exact {
            Test::Exact(v.clone())
        } else if let Some(v) = &m.prefix {
            Test::Prefix(v.clone())
        } else if let Some(v) = &m.suffix {
            Test::Suffix(v.clone())
        } else if let Some(v) = &m.regex {
            Test::Regex(anchored(v)?)
        } else {
            Test::Present(m.present.unwrap_or(true))
        };
        Ok(Condition {
            test,
            invert: m.invert,
        })
    }

    fn holds(&self, value: Option<&str>) -> bool {
        let holds = match (&self.test, value) {
            (Test::Present(present), value) => value.is_some() == *present,
            (_, None) => false,
            (Test::Exact(want), Some(v)) => v == want,
            (Test::Prefix(want), Some(v)) => v.starts_with(want.as_str()),
            (Test::Suffix(want), Some(v)) => v.ends_with(want.as_str()),
            (Test::Regex(re), Some(v)) => re.is_match(v),
        };
        holds != self.invert
    }
}

/// What a matched route does.
pub(crate) enum Action {
    Forward(Forward),
    Redirect(weft_config::Redirect),
    Direct {
        status: StatusCode,
        body: Bytes,
        content_type: HeaderValue,
    },
}

pub(crate) struct Forward {
    /// Cluster indices with cumulative weights.
    clusters: Vec<(usize, u64)>,
    total_weight: u64,
    pub(crate) cluster_header: Option<HeaderName>,
    pub(crate) prefix_rewrite: Option<String>,
    pub(crate) host_rewrite: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) per_try_timeout: Option<Duration>,
    /// Longest wait for the next piece of a body.
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) retry: Option<Retry>,
    pub(crate) mirror: Option<(usize, f64)>,
}

impl Forward {
    /// The cluster for a request, given a random number.
    pub(crate) fn pick(&self, random: u64) -> usize {
        if self.clusters.len() == 1 {
            return self.clusters[0].0;
        }
        let point = random % self.total_weight;
        self.clusters
            .iter()
            .find(|(_, upto)| point < *upto)
            .or(self.clusters.last())
            .map_or(0, |(cluster, _)| *cluster)
    }
}

/// A route's retry policy.
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    on: Vec<RetryOn>,
    status_codes: Vec<u16>,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
}

impl Retry {
    /// Whether a response with `status` is tried again.
    pub(crate) fn on_status(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.on.iter().any(|on| match on {
            RetryOn::ServerError => status.is_server_error(),
            RetryOn::GatewayError => matches!(code, 502..=504),
            RetryOn::RetriableStatusCodes => self.status_codes.contains(&code),
            RetryOn::Reset | RetryOn::ConnectFailure => false,
        })
    }

    /// Whether a failure to connect is tried again.
    pub(crate) fn on_connect_failure(&self) -> bool {
        self.on.iter().any(|on| {
            matches!(
                on,
                RetryOn::ConnectFailure | RetryOn::ServerError | RetryOn::GatewayError
            )
        })
    }

    /// Whether a connection that broke before the response is tried again.
    pub(crate) fn on_reset(&self) -> bool {
        self.on.iter().any(|on| {
            matches!(
                on,
                RetryOn::Reset | RetryOn::ServerError | RetryOn::GatewayError
            )
        })
    }

    /// The pause before retry number `retry` (from 1): exponential with
    /// full jitter, as `random` picks.
    pub(crate) fn backoff(&self, retry: u32, random: u64) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1 << retry.saturating_sub(1).min(16))
            .min(self.backoff_max);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(random % millis + 1)
    }
}

/// Header changes, parsed.
#[derive(Default)]
pub(crate) struct Mutation {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl Mutation {
    fn new(config: &HeaderMutation) -> Result<Mutation, String> {
        let pairs = |list: &[weft_config::HeaderValueConfig]| {
            list.iter()
                .map(|h| {
                    Ok((
                        HeaderName::from_bytes(h.name.as_bytes())
                            .map_err(|_| format!("bad header name `{}`", h.name))?,
                        HeaderValue::from_str(&h.value)
                            .map_err(|_| format!("bad header value `{}`", h.value))?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Mutation {
            remove: config
                .remove
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("bad header `{n}`"))
                })
                .collect::<Result<_, _>>()?,
            set: pairs(&config.set)?,
            add: pairs(&config.add)?,
        })
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// A regex matching whole values.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// Why routes could not be built (the configuration was validated, so
/// this names what validation missed).
#[derive(Debug, thiserror::Error)]
#[error("listeners[{listener}]: {message}")]
pub struct RouteError {
    listener: usize,
    message: String,
}

impl ListenerRoutes {
    /// Listener `index` of `config`, without TLS (the caller adds it).
    pub(crate) fn new(config: &ProxyConfig, index: usize) -> ListenerRoutes {
        let listener = &config.listeners[index];
        ListenerRoutes {
            name: listener.name.clone(),
            limits: listener.limits,
            http2: listener.http2,
            tls: None,
            index,
            stats: Arc::default(),
            request_id: listener.request_id,
            traceparent: listener.traceparent,
            tcp: listener.protocol == weft_config::ListenerProtocol::Tcp,
        }
    }
}

impl RouteTable {
    /// Compiles the routes of listener `index` of `config`; plugins are
    /// numbered by their position in `config.plugins`.
    pub(crate) fn new(config: &ProxyConfig, index: usize) -> Result<RouteTable, RouteError> {
        let listener = &config.listeners[index];
        let fail = |message: String| RouteError {
            listener: index,
            message,
        };
        let plugin = |name: &String| {
            config
                .plugins
                .iter()
                .position(|p| &p.name == name)
                .ok_or_else(|| fail(format!("no plugin `{name}`")))
        };
        let cluster = |name: &String| {
            config
                .clusters
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| fail(format!("no cluster `{name}`")))
        };
        let listener_chain: Arc<[usize]> = listener
            .filters
            .iter()
            .map(plugin)
            .collect::<Result<_, _>>()?;

        // `cluster:` is one catch-all route.
        let shorthand;
        let vhosts = match &listener.cluster {
            Some(name) => {
                shorthand = [weft_config::VirtualHost {
                    name: listener.name.clone(),
                    domains: vec!["*".into()],
                    routes: vec![weft_config::Route {
                        name: Some("default".into()),
                        forward: Some(weft_config::Forward {
                            cluster: Some(name.clone()),
                            timeout_ms: 0,
                            idle_timeout_ms: weft_config::DEFAULT_IDLE_TIMEOUT_MS,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                }];
                &shorthand[..]
            }
            None => &listener.virtual_hosts[..],
        };

        let mut table = RouteTable {
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            vhosts: Vec::new(),
        };
        for (v, vhost) in vhosts.iter().enumerate() {
            for domain in &vhost.domains {
                let domain = domain.to_ascii_lowercase();
                if domain == "*" {
                    table.any = Some(v);
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    table.suffixes.push((suffix.to_string(), v));
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    table.prefixes.push((prefix.to_string(), v));
                } else {
                    table.exact.insert(domain, v);
                }
            }
            let mut routes = Vec::with_capacity(vhost.routes.len());
            for (r, route) in vhost.routes.iter().enumerate() {
                let name = format!(
                    "{}/{}",
                    vhost.name,
                    route.name.clone().unwrap_or_else(|| r.to_string())
                );
                let at = |e: String| fail(format!("route `{name}`: {e}"));
                let chain = match &route.filters {
                    Some(filters) => filters.iter().map(plugin).collect::<Result<_, _>>()?,
                    None => listener_chain.clone(),
                };
                let action = if let Some(forward) = &route.forward {
                    let mut clusters = Vec::new();
                    let mut total = 0u64;
                    if let Some(name) = &forward.cluster {
                        total = 1;
                        clusters.push((cluster(name)?, 1));
                    }
                    for weighted in &forward.weighted_clusters {
                        total += u64::from(weighted.weight);
                        clusters.push((cluster(&weighted.cluster)?, total));
                    }
                    let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
                    Action::Forward(Forward {
                        clusters,
                        total_weight: total.max(1),
                        cluster_header: forward
                            .cluster_header
                            .as_ref()
                            .map(|h| HeaderName::from_bytes(h.as_bytes()))
                            .transpose()
                            .map_err(|e| at(e.to_string()))?,
                        prefix_rewrite: forward.prefix_rewrite.clone(),
                        host_rewrite: forward.host_rewrite.clone(),
                        timeout: millis(forward.timeout_ms),
                        per_try_timeout: forward.per_try_timeout_ms.and_then(millis),
                        idle_timeout: millis(forward.idle_timeout_ms),
                        retry: forward.retry.as_ref().map(|r| Retry {
                            attempts: r.attempts,
                            on: r.on.clone(),
                            status_codes: r.status_codes.clone(),
                            backoff_base: Duration::from_millis(r.backoff_base_ms),
                            backoff_max: Duration::from_millis(r.backoff_max_ms),
                        }),
                        mirror: match &forward.mirror {
                            Some(m) => Some((cluster(&m.cluster)?, m.percent)),
                            None => None,
                        },
                    })
                } else if let Some(redirect) = &route.redirect {
                    Action::Redirect(redirect.clone())
                } else if let Some(direct) = &route.direct_response {
                    Action::Direct {
                        status: StatusCode::from_u16(direct.status)
                            .map_err(|e| at(e.to_string()))?,
                        body: Bytes::from(direct.body.clone()),
                        content_type: HeaderValue::from_str(
                            direct.content_type.as_deref().unwrap_or("text/plain"),
                        )
                        .map_err(|e| at(e.to_string()))?,
                    }
                } else {
                    return Err(at("no action".into()));
                };
                routes.push(Arc::new(Route {
                    path: path_match(&route.matches).map_err(|e| at(e.to_string()))?,
                    methods: route
                        .matches
                        .methods
                        .iter()
                        .map(|m| Method::from_bytes(m.as_bytes()))
                        .collect::<Result<_, _>>()
                        .map_err(|e| at(e.to_string()))?,
                    headers: route
                        .matches
                        .headers
                        .iter()
                        .map(|h| {
                            Ok((
                                HeaderName::from_bytes(h.name.as_bytes())
                                    .map_err(|e| e.to_string())?,
                                Condition::new(h).map_err(|e| e.to_string())?,
                            ))
                        })
                        .collect::<Result<_, String>>()
                        .map_err(at)?,
                    query: route
                        .matches
                        .query
                        .iter()
                        .map(|q| Ok((q.name.clone(), Condition::new(q)?)))
                        .collect::<Result<_, regex::Error>>()
                        .map_err(|e| at(e.to_string()))?,
                    action,
                    chain,
                    request_headers: Mutation::new(&route.request_headers).map_err(at)?,
                    response_headers: Mutation::new(&route.response_headers).map_err(at)?,
                    name,
                }));
            }
            table.vhosts.push(routes);
        }
        table
            .suffixes
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        table
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(table)
    }

    /// The route for a request, if any matches.
    /// The first route of the `*` virtual host: a `cluster:` listener's
    /// one route.
    pub(crate) fn default_route(&self) -> Option<&Arc<Route>> {
        self.vhosts.get(self.any?)?.first()
    }

    pub(crate) fn route(
        &self,
        authority: &str,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&Arc<Route>> {
        let vhost = self.virtual_host(authority)?;
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        self.vhosts[vhost]
            .iter()
            .find(|route| route.matches(method, path, query, headers))
    }

    fn virtual_host(&self, authority: &str) -> Option<usize> {
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            return self.any;
        }
        let host = strip_port(authority).to_ascii_lowercase();
        if let Some(&v) = self.exact.get(&host) {
            return Some(v);
        }
        // A wildcard stands for at least one character.
        let suffix = self
            .suffixes
            .iter()
            .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()));
        let prefix = || {
            self.prefixes
                .iter()
                .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
        };
        suffix.or_else(prefix).map(|(_, v)| *v).or(self.any)
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => &authority[..colon],
        _ => authority,
    }
}

fn path_match(m: &RouteMatch) -> Result<PathMatch, regex::Error> {
    Ok(if let Some(path) = &m.path {
        PathMatch::Exact(path.clone())
    } else if let Some(prefix) = &m.prefix {
        PathMatch::Prefix(prefix.clone())
    } else if let Some(regex) = &m.regex {
        PathMatch::Regex(anchored(regex)?)
    } else {
        PathMatch::Any
    })
}

impl Route {
    fn matches(&self, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> bool {
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(want) => path == want,
            PathMatch::Prefix(want) => path.starts_with(want.as_str()),
            PathMatch::Regex(re) => re.is_match(path),
        };
        path_ok
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|(name, condition)| {
                // Several values of one header are matched joined, as one.
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => condition.holds(None),
                    (Some(one), None) => condition.holds(one.to_str().ok()),
                    (Some(_), Some(_)) => {
                        let joined: Vec<&str> = headers
                            .get_all(name)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .collect();
                        condition.holds(Some(&joined.join(",")))
                    }
                }
            })
            && self
                .query
                .iter()
                .all(|(name, condition)| condition.holds(query_value(query, name).as_deref()))
    }

    /// The path sent upstream when the route rewrites its prefix.
    pub(crate) fn rewrite_path(&self, path: &str, replacement: &str) -> String {
        let matched = match &self.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) if path.starts_with(p.as_str()) => p.len(),
            _ => 0,
        };
        let mut out = String::with_capacity(path.len() + replacement.len());
        out.push_str(replacement);
        out.push_str(&path[matched..]);
        out
    }

    /// The `Location` of a redirect answering `scheme://authority path`.
    pub(crate) fn redirect_location(
        &self,
        redirect: &weft_config::Redirect,
        scheme: &str,
        authority: &str,
        path_and_query: &str,
    ) -> String {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let scheme = redirect.scheme.as_deref().unwrap_or(scheme);
        let host = redirect
            .host
            .as_deref()
            .unwrap_or_else(|| strip_port(authority));
        let port = match redirect.port {
            Some(port) => Some(port.to_string()),
            // A new scheme drops the old port; a new host keeps neither.
            None if redirect.scheme.is_some() || redirect.host.is_some() => None,
            None => authority
                .get(strip_port(authority).len()..)
                .and_then(|p| p.strip_prefix(':'))
                .map(str::to_string),
        };
        let path = match (&redirect.path, &redirect.prefix_rewrite) {
            (Some(path), _) => path.clone(),
            (None, Some(prefix)) => self.rewrite_path(path, prefix),
            (None, None) => path.to_string(),
        };
        let mut location = format!("{scheme}://{host}");
        if let Some(port) = port {
            location.push(':');
            location.push_str(&port);
        }
        location.push_str(&path);
        if let Some(query) = query.filter(|_| !redirect.strip_query) {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// The (percent-decoded) value of query parameter `name`.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let config = weft_config::parse_proxy_config(std::path::Path::new("t.yaml"), yaml).unwrap();
        RouteTable::new(&config, 0).unwrap()
    }

    const ROUTES: &str = "
listeners:
  - name: l
    address: 127.0.0.1:0
    virtual_hosts:
      - name: api
        domains: [api.example.com]
        routes:
          - name: exact
            match: {path: /exact}
            direct_response: {status: 200}
          - name: get-v1
            match: {prefix: /v1/, methods: [GET]}
            forward: {cluster: a, prefix_rewrite: /}
          - name: header
            match: {prefix: /, headers: [{name: x-env, exact: beta}]}
            forward: {cluster: b}
          - name: query
            match: {regex: '/items/[0-9]+', query: [{name: debug, present: true}]}
            forward: {cluster: b}
          - name: absent
            match: {prefix: /, headers: [{name: x-skip, present: true, invert: true}]}
            forward: {cluster: a}
      - name: wild
        domains: ['*.example.com']
        routes: [{forward: {cluster: b}}]
      - name: pre
        domains: ['api.*']
        routes: [{forward: {cluster: b}}]
      - name: any
        domains: ['*']
        routes: [{redirect: {scheme: https}}]
clusters:
  - {name: a, endpoints: ['127.0.0.1:1']}
  - {name: b, endpoints: ['127.0.0.1:2']}
";

    fn name(
        t: &RouteTable,
        host: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        t.route(
            host,
            &Method::from_bytes(method.as_bytes()).unwrap(),
            path,
            &map,
        )
        .map(|r| r.name.clone())
    }

    #[test]
    fn routes_match_in_order_on_every_condition() {
        let t = table(ROUTES);
        let h = "api.example.com:8080";
        assert_eq!(name(&t, h, "GET", "/exact", &[]).unwrap(), "api/exact");
        assert_eq!(name(&t, h, "GET", "/exact?x=1", &[]).unwrap(), "api/exact");
        assert_eq!(name(&t, h, "GET", "/v1/users", &[]).unwrap(), "api/get-v1");
        assert_eq!(
            name(&t, h, "POST", "/v1/users", &[("x-env", "beta")]).unwrap(),
            "api/header"
        );
        assert_eq!(
            name(&t, h, "POST", "/items/12?debug", &[]).unwrap(),
            "api/query"
        );
        assert_eq!(
            name(&t, h, "POST", "/items/12x?debug", &[]).unwrap(),
            "api/absent"
        );
        assert_eq!(name(&t, h, "POST", "/items/12", &[("x-skip", "1")]), None);
    }

    #[test]
    fn virtual_hosts_by_exact_then_suffix_then_prefix_then_any() {
        let t = table(ROUTES);
        assert_eq!(
            name(&t, "API.example.com", "GET", "/exact", &[]).unwrap(),
            "api/exact"
        );
        assert_eq!(
            name(&t, "www.example.com", "GET", "/", &[]).unwrap(),
            "wild/0"
        );
        assert_eq!(
            name(&t, "api.example.org:80", "GET", "/", &[]).unwrap(),
            "pre/0"
        );
        assert_eq!(name(&t, "example.com", "GET", "/", &[]).unwrap(), "any/0");
        assert_eq!(name(&t, "", "GET", "/", &[]).unwrap(), "any/0");
    }

    #[test]
    fn rewrites_and_redirects() {
        let t = table(ROUTES);
        let v1 = t
            .route(
                "api.example.com",
                &Method::GET,
                "/v1/users",
                &HeaderMap::new(),
            )
            .unwrap();
        assert_eq!(v1.rewrite_path("/v1/users?x=1", "/"), "/users?x=1");
        let any = t
            .route("other:8080", &Method::GET, "/", &HeaderMap::new())
            .unwrap();
        let Action::Redirect(redirect) = &any.action else {
            panic!("not a redirect")
        };
        assert_eq!(
            any.redirect_location(redirect, "http", "other:8080", "/a?b=c"),
            "https://other/a?b=c"
        );
        let mut moved = redirect.clone();
        moved.scheme = None;
        moved.prefix_rewrite = Some("/new".into());
        moved.strip_query = true;
        assert_eq!(
            any.redirect_location(&moved, "http", "other:8080", "/a?b=c"),
            "http://other:8080/new/a"
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(query_value("a=1&b=x%20y+z", "b").as_deref(), Some("x y z"));
        assert_eq!(query_value("flag&a=1", "flag").as_deref(), Some(""));
        assert_eq!(query_value("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_value("a=1", "b"), None);
    }

    #[test]
    fn weights_split_in_proportion() {
        let f = Forward {
            clusters: vec![(0, 90), (1, 100)],
            total_weight: 100,
            cluster_header: None,
            prefix_rewrite: None,
            host_rewrite: None,
            timeout: None,
            per_try_timeout: None,
            idle_timeout: None,
            retry: None,
            mirror: None,
        };
        let picks: Vec<usize> = (0..100).map(|r| f.pick(r)).collect();
        assert_eq!(picks.iter().filter(|&&c| c == 1).count(), 10);
    }
}

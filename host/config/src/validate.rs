//! What the schema cannot check: references resolve, names are unique,
//! values are in range, patterns compile.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;

use crate::ConfigError;
use crate::proxy::{Cluster, InstanceAllocator, Listener, ListenerProtocol, MAX_VMS, ProxyConfig};
use crate::route::{Forward, HeaderMutation, Redirect, Route, RouteMatch, ValueMatch, VirtualHost};

impl ProxyConfig {
    /// Checks what the schema cannot: references resolve, names are unique,
    /// lists are not empty, values are in range, regular expressions
    /// compile, module files exist. `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        Check { path, config: self }.all()
    }

    /// The listener checks of [`ProxyConfig::validate`] alone: routes,
    /// their references to clusters and plugins, patterns. For listeners
    /// whose routes or chains a bundle replaced.
    pub fn validate_listeners(&self, path: &Path) -> Result<(), ConfigError> {
        let check = Check { path, config: self };
        for (i, listener) in self.listeners.iter().enumerate() {
            check.listener(&format!("listeners[{i}]"), listener)?;
        }
        Ok(())
    }
}

struct Check<'a> {
    path: &'a Path,
    config: &'a ProxyConfig,
}

type Checked = Result<(), ConfigError>;

impl Check<'_> {
    fn fail(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.path, field, message)
    }

    fn all(&self) -> Checked {
        let config = self.config;
        if config.workers == Some(0) {
            return Err(self.fail("workers", "must be at least 1 (omit it for one per CPU)"));
        }
        if config.listeners.is_empty() {
            return Err(self.fail("listeners", "at least one listener is needed"));
        }
        self.unique_names(config.listeners.iter().map(|l| &l.name), "listeners")?;
        self.unique_names(config.clusters.iter().map(|c| &c.name), "clusters")?;
        self.unique_names(config.plugins.iter().map(|p| &p.name), "plugins")?;
        self.distinct_addresses()?;
        if let Some(file) = &config.dns.hosts_file {
            self.file("dns.hosts_file", file)?;
        }
        self.runtime()?;
        if let Some(oci) = config.bundles.as_ref().and_then(|b| b.oci.as_ref()) {
            if !oci.reference.starts_with("oci://") {
                return Err(self.fail(
                    "bundles.oci.reference",
                    format!(
                        "`{}`: write oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]",
                        oci.reference
                    ),
                ));
            }
            self.range(
                "bundles.oci",
                "poll_interval_ms",
                oci.poll_interval_ms,
                100..=86_400_000,
            )?;
        }
        if let Some(bundles) = &config.bundles {
            if let Some(path) = &bundles.path
                && !path.exists()
            {
                return Err(self.fail(
                    "bundles.path",
                    format!(
                        "{} does not exist (give a bundle archive or a directory with bundle.yaml)",
                        path.display()
                    ),
                ));
            }
            match &bundles.control {
                Some(control) => {
                    if !(control.url.starts_with("http://") || control.url.starts_with("https://"))
                    {
                        return Err(self.fail(
                            "bundles.control.url",
                            format!(
                                "`{}`: give http://HOST:PORT or https://HOST:PORT",
                                control.url
                            ),
                        ));
                    }
                    self.file("bundles.control.token_file", &control.token_file)?;
                }
                None if bundles.path.is_none() && bundles.oci.is_none() => {
                    return Err(self.fail(
                        "bundles",
                        "give `path` (a bundle file or directory), `control` (an endpoint), `oci` (a registry), or several",
                    ));
                }
                None => {}
            }
            for (j, cluster) in bundles
                .added_plugins
                .allowed_clusters
                .iter()
                .flatten()
                .enumerate()
            {
                self.cluster_ref(
                    &format!("bundles.added_plugins.allowed_clusters[{j}]"),
                    cluster,
                )?;
            }
        }
        for (i, cluster) in config.clusters.iter().enumerate() {
            self.cluster(&format!("clusters[{i}]"), cluster)?;
        }
        for (i, listener) in config.listeners.iter().enumerate() {
            self.listener(&format!("listeners[{i}]"), listener)?;
        }
        for (i, plugin) in config.plugins.iter().enumerate() {
            let limits = &plugin.limits;
            let field = format!("plugins[{i}].limits");
            self.range(&field, "memory_mb", limits.memory_mb.into(), 1..=4096)?;
            self.range(&field, "callback_ms", limits.callback_ms, 1..=60_000)?;
            self.range(&field, "start_ms", limits.start_ms, 1..=600_000)?;
            self.range(
                &field,
                "body_buffer_mb",
                limits.body_buffer_mb.into(),
                1..=1024,
            )?;
            for (j, cluster) in plugin.allowed_clusters.iter().flatten().enumerate() {
                self.cluster_ref(&format!("plugins[{i}].allowed_clusters[{j}]"), cluster)?;
            }
            if plugin.module.is_dir() {
                return Err(self.fail(
                    format!("plugins[{i}].module"),
                    format!(
                        "{} is a directory: name the module's .wasm or .wat file",
                        plugin.module.display()
                    ),
                ));
            }
            if !plugin.module.is_file() {
                return Err(self.fail(
                    format!("plugins[{i}].module"),
                    format!(
                        "module file {} does not exist (relative paths are resolved against the config file's directory; build the filters with `cargo xtask build-filters`)",
                        plugin.module.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn runtime(&self) -> Checked {
        let config = self.config;
        let runtime = &config.runtime;
        if let Some(max_vms) = runtime.max_vms {
            if runtime.allocator != InstanceAllocator::Pooling {
                return Err(self.fail(
                    "runtime.max_vms",
                    "sizes the pool of the `pooling` allocator; remove it, or set `allocator: pooling`",
                ));
            }
            self.range("runtime", "max_vms", max_vms.into(), 1..=MAX_VMS.into())?;
            // A VM per plugin per worker, and room to swap one plugin in.
            if let Some(workers) = config.workers {
                let needed = workers.saturating_mul(config.plugins.len() + 1);
                if (max_vms as usize) < needed {
                    return Err(self.fail(
                        "runtime.max_vms",
                        format!(
                            "{max_vms} is too few for {} plugin(s) on {workers} worker(s): give at least {needed} (a VM per plugin per worker, and one per worker to swap a plugin in)",
                            config.plugins.len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn range(&self, at: &str, field: &str, value: u64, range: RangeInclusive<u64>) -> Checked {
        if range.contains(&value) {
            return Ok(());
        }
        Err(self.fail(
            format!("{at}.{field}"),
            format!(
                "{value} is out of range; use {} to {}",
                range.start(),
                range.end()
            ),
        ))
    }

    fn cluster(&self, at: &str, cluster: &Cluster) -> Checked {
        if cluster.endpoints.is_empty() {
            return Err(self.fail(
                format!("{at}.endpoints"),
                format!(
                    "cluster `{}` has no endpoints; list at least one address",
                    cluster.name
                ),
            ));
        }
        for (j, endpoint) in cluster.endpoints.iter().enumerate() {
            if let Err(problem) = crate::proxy::split_host_port(endpoint) {
                return Err(self.fail(
                    format!("{at}.endpoints[{j}]"),
                    format!(
                        "`{endpoint}`: {problem}; write IP:PORT or HOST:PORT, such as 10.0.0.5:8000 or backend.internal:8000"
                    ),
                ));
            }
        }
        if let Some(hash) = &cluster.hash_on {
            let given = [hash.header.is_some(), hash.cookie.is_some(), hash.source_ip];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(self.fail(
                    format!("{at}.hash_on"),
                    "give exactly one of `header`, `cookie`, `source_ip: true`",
                ));
            }
            if let Some(name) = &hash.header {
                self.header_name(&format!("{at}.hash_on.header"), name)?;
            }
        }
        if let Some(check) = &cluster.health_check {
            let field = format!("{at}.health_check");
            if !check.path.starts_with('/') {
                return Err(self.fail(format!("{field}.path"), "must start with `/`"));
            }
            self.range(&field, "interval_ms", check.interval_ms, 10..=3_600_000)?;
            self.range(&field, "timeout_ms", check.timeout_ms, 1..=600_000)?;
            self.range(
                &field,
                "unhealthy_threshold",
                check.unhealthy_threshold.into(),
                1..=100,
            )?;
            self.range(
                &field,
                "healthy_threshold",
                check.healthy_threshold.into(),
                1..=100,
            )?;
        }
        if let Some(tls) = &cluster.tls {
            let at = format!("{at}.tls");
            for (field, file) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                if let Some(file) = file {
                    self.file(&format!("{at}.{field}"), file)?;
                }
            }
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(self.fail(at, "give both `cert` and `key`, or neither"));
            }
        }
        if let Some(budget) = &cluster.circuit_breakers.retry_budget {
            let field = format!("{at}.circuit_breakers.retry_budget");
            self.range(&field, "percent", budget.percent.into(), 0..=100)?;
        }
        if cluster.dns_refresh_ms != 0 {
            self.range(
                at,
                "dns_refresh_ms",
                cluster.dns_refresh_ms,
                100..=86_400_000,
            )?;
        }
        if let Some(outlier) = &cluster.outlier_detection {
            let field = format!("{at}.outlier_detection");
            self.range(
                &field,
                "consecutive_failures",
                outlier.consecutive_failures.into(),
                1..=1000,
            )?;
            self.range(
                &field,
                "base_ejection_ms",
                outlier.base_ejection_ms,
                1..=86_400_000,
            )?;
            self.range(
                &field,
                "max_ejection_percent",
                outlier.max_ejection_percent.into(),
                0..=100,
            )?;
        }
        Ok(())
    }

    /// A `protocol: tcp` listener: one cluster, plugins, nothing of HTTP.
    fn tcp_listener(&self, at: &str, listener: &Listener) -> Checked {
        let http_only = [
            ("virtual_hosts", !listener.virtual_hosts.is_empty()),
            ("tls", listener.tls.is_some()),
            ("access_log", listener.access_log.is_some()),
        ];
        if let Some((field, _)) = http_only.iter().find(|(_, given)| *given) {
            return Err(self.fail(
                format!("{at}.{field}"),
                format!(
                    "listener `{}` is `protocol: tcp`: `{field}` is for HTTP listeners",
                    listener.name
                ),
            ));
        }
        let Some(cluster) = &listener.cluster else {
            return Err(self.fail(
                format!("{at}.cluster"),
                format!(
                    "listener `{}` is `protocol: tcp` and needs the `cluster` its connections go to",
                    listener.name
                ),
            ));
        };
        self.cluster_ref(&format!("{at}.cluster"), cluster)?;
        if let Some(c) = self.config.clusters.iter().find(|c| &c.name == cluster)
            && c.tls.is_some()
        {
            return Err(self.fail(
                format!("{at}.cluster"),
                format!(
                    "cluster `{cluster}` speaks TLS to its endpoints; a tcp listener relays plain TCP"
                ),
            ));
        }
        self.filters(&format!("{at}.filters"), &listener.filters)
    }

    fn listener(&self, at: &str, listener: &Listener) -> Checked {
        if listener.protocol == ListenerProtocol::Tcp {
            return self.tcp_listener(at, listener);
        }
        match (&listener.cluster, listener.virtual_hosts.is_empty()) {
            (Some(_), false) => {
                return Err(self.fail(
                    format!("{at}.cluster"),
                    "give either `cluster` (every request to one cluster) or `virtual_hosts`, not both",
                ));
            }
            (None, true) => {
                return Err(self.fail(
                    at,
                    format!(
                        "listener `{}` has nowhere to send requests; give `cluster` or `virtual_hosts`",
                        listener.name
                    ),
                ));
            }
            (Some(cluster), true) => self.cluster_ref(&format!("{at}.cluster"), cluster)?,
            (None, false) => {}
        }
        self.filters(&format!("{at}.filters"), &listener.filters)?;
        let limits = &listener.limits;
        let field = format!("{at}.limits");
        self.range(
            &field,
            "max_request_headers_kb",
            limits.max_request_headers_kb.into(),
            8..=1024,
        )?;
        self.range(
            &field,
            "request_header_timeout_ms",
            limits.request_header_timeout_ms,
            1..=3_600_000,
        )?;
        if let Some(tls) = &listener.tls {
            let at = format!("{at}.tls");
            if tls.certificates.is_empty() {
                return Err(self.fail(
                    format!("{at}.certificates"),
                    "list at least one certificate",
                ));
            }
            for (i, files) in tls.certificates.iter().enumerate() {
                self.file(&format!("{at}.certificates[{i}].cert"), &files.cert)?;
                self.file(&format!("{at}.certificates[{i}].key"), &files.key)?;
            }
            match (&tls.client_ca, tls.require_client_certificate) {
                (Some(ca), _) => self.file(&format!("{at}.client_ca"), ca)?,
                (None, Some(_)) => {
                    return Err(self.fail(
                        format!("{at}.require_client_certificate"),
                        "means something only with `client_ca` (the CAs client certificates must chain to): set `client_ca`, or remove it",
                    ));
                }
                (None, None) => {}
            }
            self.range(
                &at,
                "reload_interval_ms",
                tls.reload_interval_ms,
                100..=86_400_000,
            )?;
        }
        self.unique_names(
            listener.virtual_hosts.iter().map(|v| &v.name),
            &format!("{at}.virtual_hosts"),
        )?;
        let mut domains = HashSet::new();
        for (i, vhost) in listener.virtual_hosts.iter().enumerate() {
            let at = format!("{at}.virtual_hosts[{i}]");
            for (j, domain) in vhost.domains.iter().enumerate() {
                let field = format!("{at}.domains[{j}]");
                check_domain(domain).map_err(|problem| self.fail(&field, problem))?;
                if !domains.insert(domain.to_ascii_lowercase()) {
                    return Err(self.fail(
                        field,
                        format!("`{domain}` is served by two virtual hosts of this listener"),
                    ));
                }
            }
            self.virtual_host(&at, vhost)?;
        }
        Ok(())
    }

    fn virtual_host(&self, at: &str, vhost: &VirtualHost) -> Checked {
        if vhost.domains.is_empty() {
            return Err(self.fail(
                format!("{at}.domains"),
                "list at least one domain (`*` for any)",
            ));
        }
        if vhost.routes.is_empty() {
            return Err(self.fail(format!("{at}.routes"), "list at least one route"));
        }
        for (i, route) in vhost.routes.iter().enumerate() {
            self.route(&format!("{at}.routes[{i}]"), route)?;
        }
        Ok(())
    }

    fn route(&self, at: &str, route: &Route) -> Checked {
        self.route_match(&format!("{at}.match"), &route.matches)?;
        let actions = [
            route.forward.is_some(),
            route.redirect.is_some(),
            route.direct_response.is_some(),
        ];
        if actions.iter().filter(|a| **a).count() != 1 {
            return Err(self.fail(
                at,
                "give exactly one action: `forward`, `redirect` or `direct_response`",
            ));
        }
        if let Some(forward) = &route.forward {
            self.forward(&format!("{at}.forward"), forward)?;
        }
        if let Some(redirect) = &route.redirect {
            self.redirect(&format!("{at}.redirect"), redirect)?;
        }
        if let Some(direct) = &route.direct_response {
            self.status(&format!("{at}.direct_response.status"), direct.status)?;
            if let Some(content_type) = &direct.content_type {
                self.header_value(&format!("{at}.direct_response.content_type"), content_type)?;
            }
        }
        self.mutation(&format!("{at}.request_headers"), &route.request_headers)?;
        self.mutation(&format!("{at}.response_headers"), &route.response_headers)?;
        if let Some(filters) = &route.filters {
            self.filters(&format!("{at}.filters"), filters)?;
        }
        Ok(())
    }

    fn route_match(&self, at: &str, m: &RouteMatch) -> Checked {
        let given = [m.path.is_some(), m.prefix.is_some(), m.regex.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(self.fail(at, "give at most one of `path`, `prefix`, `regex`"));
        }
        for (field, value) in [("path", &m.path), ("prefix", &m.prefix)] {
            if let Some(value) = value
                && !value.starts_with('/')
            {
                return Err(self.fail(
                    format!("{at}.{field}"),
                    format!("`{value}` must start with `/`"),
                ));
            }
        }
        if let Some(regex) = &m.regex {
            self.regex(&format!("{at}.regex"), regex)?;
        }
        for (i, method) in m.methods.iter().enumerate() {
            if http::Method::from_bytes(method.as_bytes()).is_err() {
                return Err(self.fail(
                    format!("{at}.methods[{i}]"),
                    format!("`{method}` is not an HTTP method"),
                ));
            }
        }
        for (i, header) in m.headers.iter().enumerate() {
            let field = format!("{at}.headers[{i}]");
            self.header_name(&format!("{field}.name"), &header.name)?;
            self.value_match(&field, header)?;
        }
        for (i, query) in m.query.iter().enumerate() {
            self.value_match(&format!("{at}.query[{i}]"), query)?;
        }
        Ok(())
    }

    fn value_match(&self, at: &str, m: &ValueMatch) -> Checked {
        let given = [
            m.exact.is_some(),
            m.prefix.is_some(),
            m.suffix.is_some(),
            m.regex.is_some(),
            m.present.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(self.fail(
                at,
                "give exactly one of `exact`, `prefix`, `suffix`, `regex`, `present`",
            ));
        }
        if m.name.is_empty() {
            return Err(self.fail(format!("{at}.name"), "must not be empty"));
        }
        if let Some(regex) = &m.regex {
            self.regex(&format!("{at}.regex"), regex)?;
        }
        Ok(())
    }

    fn forward(&self, at: &str, forward: &Forward) -> Checked {
        match (&forward.cluster, forward.weighted_clusters.is_empty()) {
            (Some(cluster), true) => self.cluster_ref(&format!("{at}.cluster"), cluster)?,
            (None, false) => {
                let mut total = 0u64;
                for (i, weighted) in forward.weighted_clusters.iter().enumerate() {
                    self.cluster_ref(
                        &format!("{at}.weighted_clusters[{i}].cluster"),
                        &weighted.cluster,
                    )?;
                    total += u64::from(weighted.weight);
                }
                if total == 0 {
                    return Err(self.fail(
                        format!("{at}.weighted_clusters"),
                        "the weights add up to 0; give at least one a positive weight",
                    ));
                }
            }
            _ => {
                return Err(self.fail(at, "give exactly one of `cluster` and `weighted_clusters`"));
            }
        }
        if let Some(name) = &forward.cluster_header {
            self.header_name(&format!("{at}.cluster_header"), name)?;
        }
        if let Some(prefix) = &forward.prefix_rewrite
            && !prefix.starts_with('/')
        {
            return Err(self.fail(
                format!("{at}.prefix_rewrite"),
                format!("`{prefix}` must start with `/`"),
            ));
        }
        if let Some(host) = &forward.host_rewrite {
            self.header_value(&format!("{at}.host_rewrite"), host)?;
        }
        if let Some(per_try) = forward.per_try_timeout_ms {
            self.range(at, "per_try_timeout_ms", per_try, 1..=3_600_000)?;
        }
        self.range(at, "timeout_ms", forward.timeout_ms, 0..=3_600_000)?;
        if let Some(retry) = &forward.retry {
            let field = format!("{at}.retry");
            self.range(&field, "attempts", retry.attempts.into(), 0..=10)?;
            self.range(&field, "backoff_base_ms", retry.backoff_base_ms, 1..=60_000)?;
            self.range(
                &field,
                "backoff_max_ms",
                retry.backoff_max_ms,
                retry.backoff_base_ms..=600_000,
            )?;
            for (i, &status) in retry.status_codes.iter().enumerate() {
                self.status(&format!("{field}.status_codes[{i}]"), status)?;
            }
            let by_status = retry
                .on
                .contains(&crate::route::RetryOn::RetriableStatusCodes);
            if by_status && retry.status_codes.is_empty() {
                return Err(self.fail(
                    format!("{field}.status_codes"),
                    "`retriable-status-codes` is in `on`, so list the statuses to retry",
                ));
            }
        }
        if let Some(mirror) = &forward.mirror {
            self.cluster_ref(&format!("{at}.mirror.cluster"), &mirror.cluster)?;
            if !(0.0..=100.0).contains(&mirror.percent) {
                return Err(self.fail(
                    format!("{at}.mirror.percent"),
                    format!("{} is out of range; use 0 to 100", mirror.percent),
                ));
            }
        }
        Ok(())
    }

    fn redirect(&self, at: &str, redirect: &Redirect) -> Checked {
        if ![301, 302, 303, 307, 308].contains(&redirect.status) {
            return Err(self.fail(
                format!("{at}.status"),
                format!(
                    "{} is not a redirect status; use 301, 302, 303, 307 or 308",
                    redirect.status
                ),
            ));
        }
        if let Some(scheme) = &redirect.scheme
            && scheme != "http"
            && scheme != "https"
        {
            return Err(self.fail(
                format!("{at}.scheme"),
                format!("`{scheme}`: use `http` or `https`"),
            ));
        }
        if redirect.path.is_some() && redirect.prefix_rewrite.is_some() {
            return Err(self.fail(at, "give at most one of `path` and `prefix_rewrite`"));
        }
        for (field, value) in [("path", &redirect.path), ("host", &redirect.host)] {
            if let Some(value) = value {
                self.header_value(&format!("{at}.{field}"), value)?;
            }
        }
        Ok(())
    }

    fn mutation(&self, at: &str, mutation: &HeaderMutation) -> Checked {
        for (i, name) in mutation.remove.iter().enumerate() {
            self.header_name(&format!("{at}.remove[{i}]"), name)?;
        }
        for (list, entries) in [("set", &mutation.set), ("add", &mutation.add)] {
            for (i, entry) in entries.iter().enumerate() {
                self.header_name(&format!("{at}.{list}[{i}].name"), &entry.name)?;
                self.header_value(&format!("{at}.{list}[{i}].value"), &entry.value)?;
            }
        }
        Ok(())
    }

    /// No two listeners, nor a listener and the admin endpoint, on one
    /// address: with `SO_REUSEPORT` both would bind, and the kernel would
    /// share the connections between them. Port 0 (a free port each) is
    /// never a clash; a wildcard address clashes with any on its port.
    fn distinct_addresses(&self) -> Checked {
        let config = self.config;
        let mut taken: Vec<(String, SocketAddr)> = Vec::new();
        let wanted = config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("listeners[{i}].address"), l.address))
            .chain(
                config
                    .admin
                    .iter()
                    .map(|a| ("admin.address".to_string(), a.address)),
            );
        for (field, address) in wanted {
            if address.port() == 0 {
                continue;
            }
            let clash = taken.iter().find(|(_, other)| {
                other.port() == address.port()
                    && (other.ip() == address.ip()
                        || other.ip().is_unspecified()
                        || address.ip().is_unspecified())
            });
            if let Some((other_field, other)) = clash {
                return Err(self.fail(
                    field,
                    format!(
                        "{address} overlaps {other_field} ({other}): each listener, and the admin endpoint, needs an address of its own"
                    ),
                ));
            }
            taken.push((field, address));
        }
        Ok(())
    }

    fn file(&self, field: &str, file: &Path) -> Checked {
        if file.is_file() {
            return Ok(());
        }
        if file.is_dir() {
            return Err(self.fail(
                field,
                format!("{} is a directory, not a file", file.display()),
            ));
        }
        Err(self.fail(
            field,
            format!(
                "file {} does not exist (relative paths are resolved against the config file's directory)",
                file.display()
            ),
        ))
    }

    fn status(&self, field: &str, status: u16) -> Checked {
        if (100..=599).contains(&status) {
            return Ok(());
        }
        Err(self.fail(
            field,
            format!("{status} is not an HTTP status; use 100 to 599"),
        ))
    }

    fn header_name(&self, field: &str, name: &str) -> Checked {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(_) => Ok(()),
            Err(_) => Err(self.fail(field, format!("`{name}` is not a valid header name"))),
        }
    }

    fn header_value(&self, field: &str, value: &str) -> Checked {
        match http::HeaderValue::from_str(value) {
            Ok(_) => Ok(()),
            Err(_) => Err(self.fail(
                field,
                format!("`{value}` cannot be sent in a header (control characters?)"),
            )),
        }
    }

    fn regex(&self, field: &str, pattern: &str) -> Checked {
        match regex::Regex::new(pattern) {
            Ok(_) => Ok(()),
            Err(err) => Err(self.fail(
                field,
                format!("`{pattern}` is not a valid regular expression: {err}"),
            )),
        }
    }

    fn cluster_ref(&self, field: &str, name: &str) -> Checked {
        if self.config.clusters.iter().any(|c| c.name == name) {
            return Ok(());
        }
        Err(self.fail(
            field,
            format!(
                "no cluster named `{name}`; known clusters: {}",
                known(self.config.clusters.iter().map(|c| &c.name))
            ),
        ))
    }

    fn filters(&self, at: &str, filters: &[String]) -> Checked {
        let plugins = &self.config.plugins;
        for (j, filter) in filters.iter().enumerate() {
            if !plugins.iter().any(|p| &p.name == filter) {
                return Err(self.fail(
                    format!("{at}[{j}]"),
                    format!(
                        "no plugin named `{filter}`; known plugins: {}",
                        known(plugins.iter().map(|p| &p.name))
                    ),
                ));
            }
        }
        Ok(())
    }

    fn unique_names<'a>(&self, names: impl Iterator<Item = &'a String>, list: &str) -> Checked {
        let mut seen = HashSet::new();
        for (i, name) in names.enumerate() {
            if name.is_empty() {
                return Err(self.fail(format!("{list}[{i}].name"), "must not be empty"));
            }
            if !seen.insert(name) {
                return Err(self.fail(
                    format!("{list}[{i}].name"),
                    format!("`{name}` is used twice; names in `{list}` must be unique"),
                ));
            }
        }
        Ok(())
    }
}

/// A virtual host domain: `*`, `*.suffix`, `prefix.*` or a plain name.
fn check_domain(domain: &str) -> Result<(), String> {
    let body = if domain == "*" {
        return Ok(());
    } else if let Some(rest) = domain.strip_prefix('*') {
        rest
    } else if let Some(rest) = domain.strip_suffix('*') {
        rest
    } else {
        domain
    };
    if body.is_empty() || body.contains('*') {
        return Err(format!(
            "`{domain}`: a `*` may only stand alone, start the name (`*.example.com`) or end it (`api.*`)"
        ));
    }
    if body.contains(':') {
        return Err(format!(
            "`{domain}`: domains are matched without the port; leave it out"
        ));
    }
    Ok(())
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

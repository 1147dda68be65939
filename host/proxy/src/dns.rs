//! Endpoint host names: resolution (a hosts file first, then the system
//! resolver) and the periodic refresh that keeps a cluster's members in
//! step with the answers.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::{ClusterShared, resolve};

/// Resolves endpoint host names.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolver {
    hosts_file: Option<PathBuf>,
}

impl Resolver {
    pub(crate) fn new(config: &weft_config::Dns) -> Resolver {
        Resolver {
            hosts_file: config.hosts_file.clone(),
        }
    }

    /// The addresses of `host` (a name or an IP literal) with `port`.
    pub(crate) fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Some(file) = &self.hosts_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read hosts file {}: {e}", file.display()))?;
            let listed = hosts_lookup(&text, host);
            if !listed.is_empty() {
                return Ok(listed
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect());
            }
        }
        let resolved: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .collect();
        if resolved.is_empty() {
            return Err("no addresses".into());
        }
        Ok(resolved)
    }
}

/// The addresses a hosts file (`ADDRESS NAME...` lines, `#` comments) gives
/// `name`, in file order; names compare without regard to case.
fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        if words.any(|w| w.eq_ignore_ascii_case(name)) && !found.contains(&ip) {
            found.push(ip);
        }
    }
    found
}

/// Whether `cluster` names any endpoint by host name and asks for refreshes.
pub(crate) fn refreshed(cluster: &ClusterShared) -> bool {
    cluster.config.dns_refresh_ms > 0
        && cluster.config.endpoints.iter().any(|endpoint| {
            weft_config::split_host_port(endpoint)
                .is_ok_and(|(host, _)| host.parse::<IpAddr>().is_err())
        })
}

/// Resolves `cluster`'s endpoints every `dns_refresh_ms` until `shutdown`;
/// a changed answer replaces the members, a failed one keeps them.
pub(crate) async fn refresh(
    cluster: Arc<ClusterShared>,
    resolver: Arc<Resolver>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(cluster.config.dns_refresh_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let (config, resolver2) = (cluster.config.clone(), resolver.clone());
        let answer = tokio::task::spawn_blocking(move || resolve(&config, &resolver2)).await;
        match answer {
            Ok(Ok(addrs)) => {
                let listed: Vec<String> = addrs.iter().map(|(a, _)| a.to_string()).collect();
                if cluster.set_members(addrs) {
                    cluster.stats.dns_changes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        cluster = %cluster.name,
                        "endpoints now [{}]",
                        listed.join(", ")
                    );
                }
            }
            Ok(Err((endpoint, problem))) => {
                cluster.stats.dns_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    cluster = %cluster.name,
                    "cannot resolve `{}`: {problem}; keeping the current endpoints",
                    cluster.config.endpoints[endpoint]
                );
            }
            Err(err) => tracing::warn!(cluster = %cluster.name, "DNS refresh failed: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_files_list_addresses_by_name() {
        let text = "# comment\n127.0.0.2 api api.internal # trailing\n::1 API\nbogus line\n127.0.0.2 api\n";
        assert_eq!(
            hosts_lookup(text, "api"),
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(hosts_lookup(text, "api.internal").len(), 1);
        assert!(hosts_lookup(text, "comment").is_empty());
        assert!(hosts_lookup(text, "line").is_empty());
    }

    #[test]
    fn ip_literals_need_no_lookup() {
        let resolver = Resolver::default();
        assert_eq!(
            resolver.resolve("10.1.2.3", 80).unwrap(),
            vec!["10.1.2.3:80".parse().unwrap()]
        );
    }
}

//! Cluster upkeep off the workers, on one thread: active health checks
//! (each round sends `GET path` on a fresh connection to every current
//! endpoint and sets its shared `healthy` flag after enough results in a
//! row) and DNS refreshes (see `dns`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::cluster::ClusterShared;
use crate::dns::{self, Resolver};

/// Starts the upkeep thread if any cluster has health checks or DNS
/// refreshes; it stops when `shutdown` turns true.
pub(crate) fn start(
    clusters: &[Arc<ClusterShared>],
    resolver: Arc<Resolver>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let checked: Vec<Arc<ClusterShared>> = clusters
        .iter()
        .filter(|c| c.config.health_check.is_some())
        .cloned()
        .collect();
    let refreshed: Vec<Arc<ClusterShared>> = clusters
        .iter()
        .filter(|c| dns::refreshed(c))
        .cloned()
        .collect();
    if checked.is_empty() && refreshed.is_empty() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = std::thread::Builder::new()
        .name("weft-upkeep".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for cluster in checked {
                    tasks.spawn(check_cluster(cluster, shutdown.clone()));
                }
                for cluster in refreshed {
                    tasks.spawn(dns::refresh(cluster, resolver.clone(), shutdown.clone()));
                }
                while tasks.join_next().await.is_some() {}
            });
        })?;
    Ok(Some(handle))
}

/// Checks every endpoint of `cluster` each interval, following changes of
/// its members.
async fn check_cluster(cluster: Arc<ClusterShared>, mut shutdown: watch::Receiver<bool>) {
    let Some(config) = cluster.config.health_check.clone() else {
        return;
    };
    let interval = Duration::from_millis(config.interval_ms);
    let timeout = Duration::from_millis(config.timeout_ms);
    // Per endpoint, results in a row: positive passes, negative failures.
    let mut streaks: HashMap<SocketAddr, i64> = HashMap::new();
    loop {
        let members = cluster.members();
        let mut probes = tokio::task::JoinSet::new();
        for (i, endpoint) in members.endpoints.iter().enumerate() {
            let (addr, path) = (endpoint.addr, config.path.clone());
            probes.spawn(async move {
                let result = tokio::time::timeout(timeout, probe(addr, &path))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (i, result)
            });
        }
        streaks.retain(|addr, _| members.endpoints.iter().any(|e| e.addr == *addr));
        while let Some(Ok((i, result))) = probes.join_next().await {
            let endpoint = &members.endpoints[i];
            let streak = streaks.entry(endpoint.addr).or_default();
            let healthy = endpoint.healthy.load(Ordering::Relaxed);
            match result {
                Ok(()) => {
                    *streak = (*streak).max(0) + 1;
                    if !healthy && *streak >= i64::from(config.healthy_threshold) {
                        endpoint.healthy.store(true, Ordering::Relaxed);
                        tracing::info!(cluster = %cluster.name, endpoint = %endpoint.addr, "endpoint is healthy again");
                    }
                }
                Err(reason) => {
                    *streak = (*streak).min(0) - 1;
                    if healthy && -*streak >= i64::from(config.unhealthy_threshold) {
                        endpoint.healthy.store(false, Ordering::Relaxed);
                        tracing::warn!(
                            cluster = %cluster.name,
                            endpoint = %endpoint.addr,
                            "endpoint is unhealthy: {reason}"
                        );
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One check: a 2xx answer to `GET path` passes.
async fn probe(addr: SocketAddr, path: &str) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "weft-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("`GET {path}` answered {status}"))
    }
}

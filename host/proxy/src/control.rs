//! The subscription to a control endpoint: the `weft-control` thread
//! long-polls what this proxy should run, fetches the bundle, applies it
//! (signature, labels, canary VMs — as any bundle) and reports ACK (running
//! on every worker) or NACK (refused, with the reason). An unreachable
//! endpoint is retried with backoff; the running version stays meanwhile.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use weft_bundle::PublicKey;
use weft_control::Client;
use weft_control::api::{Labels, Report};
use weft_control::oci::OciRef;

use crate::Swapper;
use crate::bundles::KeyError;

/// How long one `desired` request waits for a change.
const POLL: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the subscription thread.
pub(crate) fn start(
    swapper: Arc<Swapper>,
    subscription: &weft_config::ControlSubscription,
    labels: Labels,
    trusted: Vec<PublicKey>,
    default_id: String,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, crate::StartError> {
    let fail = |field: &str, problem: String| KeyError {
        field: format!("control.{field}"),
        problem,
    };
    let token = std::fs::read_to_string(&subscription.token_file).map_err(|e| {
        fail(
            "token_file",
            format!("{}: {e}", subscription.token_file.display()),
        )
    })?;
    let mut client =
        Client::new(&subscription.url, &token).map_err(|e| fail("url", e.to_string()))?;
    if let Some(ca) = &subscription.ca {
        client = client.trusting(ca).map_err(|e| fail("ca", e.to_string()))?;
    }
    let id = subscription.id.clone().unwrap_or(default_id);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::StartError::Thread)?;
    std::thread::Builder::new()
        .name("weft-control".into())
        .spawn(move || {
            runtime.block_on(subscribe(swapper, client, id, labels, trusted, shutdown));
        })
        .map_err(crate::StartError::Thread)
}

async fn subscribe(
    swapper: Arc<Swapper>,
    client: Client,
    id: String,
    labels: Labels,
    trusted: Vec<PublicKey>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(url = client.url(), proxy = %id, "subscribed to the control endpoint");
    let mut known: Option<String> = None;
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let asked = tokio::select! {
            asked = client.desired(&id, &labels, known.as_deref(), POLL) => asked,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let desired = match asked {
            Ok(desired) => {
                if failing {
                    tracing::info!(url = client.url(), "control endpoint reachable again");
                    failing = false;
                }
                backoff = Duration::from_secs(1);
                desired
            }
            Err(err) => {
                if !failing {
                    tracing::warn!("{err}; retrying, the running version stays");
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Some(desired) = desired else { continue };
        tracing::info!(bundle = %desired.name, version = %desired.version, digest = %desired.digest, "control endpoint asks for a bundle");
        let outcome = match client.download(&desired.digest).await {
            Ok(archive) => apply(&swapper, &archive, Some(&desired.digest), &trusted),
            Err(err) => Err(format!("cannot fetch the bundle: {err}")),
        };
        if let Err(reason) = &outcome {
            tracing::error!("NACK {}: {reason}", desired.digest);
        }
        let report = Report {
            digest: desired.digest.clone(),
            ok: outcome.is_ok(),
            reason: outcome.err(),
            labels: labels.clone(),
        };
        if let Err(err) = client.report(&id, &report).await {
            tracing::warn!("cannot report to the control endpoint: {err}");
        }
        known = Some(desired.digest);
    }
}

/// Reads and applies an archive (that must have `digest`, if given).
fn apply(
    swapper: &Swapper,
    archive: &[u8],
    digest: Option<&str>,
    trusted: &[PublicKey],
) -> Result<(), String> {
    let bundle = match weft_bundle::Bundle::from_archive(archive) {
        Ok(bundle) => bundle,
        Err(err) => {
            swapper.refuse_bundle(&err.to_string());
            return Err(err.to_string());
        }
    };
    if let Some(digest) = digest
        && bundle.digest() != digest
    {
        let reason = format!(
            "the bundle fetched has digest {}, not the {digest} asked for",
            bundle.digest()
        );
        swapper.refuse_bundle(&reason);
        return Err(reason);
    }
    swapper
        .apply_bundle(&bundle, trusted)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// Starts the thread that pulls a bundle from an OCI registry: at start,
/// then every `poll_interval_ms`, applying it whenever the manifest the
/// reference names changes.
pub(crate) fn start_oci(
    swapper: Arc<Swapper>,
    source: &weft_config::OciSource,
    trusted: Vec<PublicKey>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, crate::StartError> {
    let reference = OciRef::parse(&source.reference).map_err(|e| KeyError {
        field: "oci.reference".into(),
        problem: e.to_string(),
    })?;
    let every = Duration::from_millis(source.poll_interval_ms);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::StartError::Thread)?;
    std::thread::Builder::new()
        .name("weft-oci".into())
        .spawn(move || runtime.block_on(pull(swapper, reference, every, trusted, shutdown)))
        .map_err(crate::StartError::Thread)
}

async fn pull(
    swapper: Arc<Swapper>,
    reference: OciRef,
    every: Duration,
    trusted: Vec<PublicKey>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut known: Option<String> = None;
    let mut failing = false;
    loop {
        match reference.manifest().await {
            Ok((digest, manifest)) => {
                failing = false;
                if known.as_deref() != Some(digest.as_str()) {
                    tracing::info!(registry = reference.registry(), repository = %reference.repository, reference = %reference.reference, %digest, "pulling a bundle");
                    let outcome = match reference.layer(&manifest).await {
                        Ok(archive) => apply(&swapper, &archive, None, &trusted),
                        Err(err) => {
                            swapper.refuse_bundle(&err.to_string());
                            Err(err.to_string())
                        }
                    };
                    if let Err(reason) = outcome {
                        tracing::error!("bundle {digest} from the registry refused: {reason}");
                    }
                    known = Some(digest);
                }
            }
            Err(err) => {
                if !failing {
                    tracing::warn!("{err}; retrying, the running version stays");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

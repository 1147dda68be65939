//! `weft control` (the endpoint, and making tokens) and the `weft bundle`
//! commands that talk to it: push, list, promote, rollback, status,
//! history. Exit status 0 on success, 1 when the endpoint refuses (or the
//! input is bad), 3 when it cannot be reached.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use weft_control::api::{PromoteRequest, RollbackRequest};
use weft_control::{Client, ClientError};

/// How to reach the control endpoint.
#[derive(Args, Clone)]
pub(crate) struct Endpoint {
    /// The control endpoint, http(s)://HOST:PORT.
    #[arg(long, env = "WEFT_CONTROL")]
    control: Option<String>,
    /// A file holding the API token; default: the WEFT_TOKEN environment variable.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// For https://: trust the CA certificates in this PEM file instead of
    /// the system's.
    #[arg(long, env = "WEFT_CONTROL_CA")]
    ca: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub(crate) enum RemoteCommand {
    /// Upload a bundle archive to the control endpoint, or to an OCI
    /// registry when a destination `oci://REGISTRY/REPOSITORY:TAG` is given.
    Push {
        /// The archive (`weft bundle build`).
        bundle: PathBuf,
        /// An OCI reference to push to instead of the control endpoint.
        destination: Option<String>,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// List the bundles the endpoint stores.
    List {
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Make a version the one the selected proxies run.
    Promote {
        /// The bundle's name.
        name: String,
        /// The version.
        version: String,
        /// Only proxies with this label (KEY=VALUE; repeat for more).
        #[arg(long = "selector", value_parser = parse_label)]
        selector: Vec<(String, String)>,
        /// Staged: this many proxies first, the rest once they all ACK.
        #[arg(long)]
        canary: Option<usize>,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Run an earlier version again.
    Rollback {
        /// The bundle's name.
        name: String,
        /// The earlier version.
        version: String,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Promotions, and what every proxy runs (ACK/NACK).
    Status {
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// The audit history: who did what, when.
    History {
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}`: write KEY=VALUE"))
}

const UNREACHABLE: u8 = 3;

pub(crate) fn remote(command: RemoteCommand) -> ExitCode {
    if let RemoteCommand::Push {
        bundle,
        destination: Some(destination),
        endpoint,
    } = &command
    {
        return push_oci(bundle, destination, endpoint.json);
    }
    let endpoint = match &command {
        RemoteCommand::Push { endpoint, .. }
        | RemoteCommand::List { endpoint }
        | RemoteCommand::Promote { endpoint, .. }
        | RemoteCommand::Rollback { endpoint, .. }
        | RemoteCommand::Status { endpoint }
        | RemoteCommand::History { endpoint } => endpoint.clone(),
    };
    let client = match client(&endpoint) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&client, command, endpoint.json));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Client(err @ ClientError::Unreachable { .. })) => {
            eprintln!("error: {err}");
            ExitCode::from(UNREACHABLE)
        }
        Err(Failure::Client(err)) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Input(String),
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Failure {
        Failure::Client(err)
    }
}

/// `weft bundle push FILE oci://...`.
fn push_oci(file: &Path, destination: &str, json: bool) -> ExitCode {
    let outcome = (|| {
        let reference = weft_control::oci::OciRef::parse(destination)
            .map_err(|e| (ExitCode::FAILURE, e.to_string()))?;
        let archive = std::fs::read(file)
            .map_err(|e| (ExitCode::FAILURE, format!("{}: {e}", file.display())))?;
        let bundle = weft_bundle::Bundle::from_archive(&archive)
            .map_err(|e| (ExitCode::FAILURE, format!("{}: {e}", file.display())))?;
        let summary = serde_json::json!({
            "name": bundle.manifest.name,
            "version": bundle.manifest.version,
            "digest": bundle.digest(),
            "labels": bundle.manifest.labels,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| (ExitCode::FAILURE, e.to_string()))?;
        let manifest = runtime
            .block_on(reference.push(&archive, &summary))
            .map_err(|e| match e {
                weft_control::oci::OciError::Unreachable { .. } => {
                    (ExitCode::from(UNREACHABLE), e.to_string())
                }
                _ => (ExitCode::FAILURE, e.to_string()),
            })?;
        Ok((summary, manifest))
    })();
    match outcome {
        Ok((summary, manifest)) => {
            if json {
                let mut summary = summary;
                summary["reference"] = destination.into();
                summary["manifest_digest"] = manifest.into();
                print_json(&summary);
            } else {
                println!(
                    "pushed {} {} to {destination} (manifest {manifest})",
                    summary["name"].as_str().unwrap_or_default(),
                    summary["version"].as_str().unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

fn client(endpoint: &Endpoint) -> Result<Client, String> {
    let control = endpoint
        .control
        .as_deref()
        .ok_or_else(|| "no control endpoint: give --control URL or set WEFT_CONTROL".to_string())?;
    let token = match &endpoint.token_file {
        Some(file) => {
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?
        }
        None => std::env::var("WEFT_TOKEN")
            .map_err(|_| "no token: give --token-file FILE or set WEFT_TOKEN".to_string())?,
    };
    let client = Client::new(control, &token).map_err(|e| e.to_string())?;
    match &endpoint.ca {
        Some(ca) => client.trusting(ca).map_err(|e| e.to_string()),
        None => Ok(client),
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!("{:#}", serde_json::to_value(value).unwrap_or_default());
}

async fn run(client: &Client, command: RemoteCommand, json: bool) -> Result<(), Failure> {
    match command {
        RemoteCommand::Push { bundle, .. } => {
            let archive = std::fs::read(&bundle)
                .map_err(|e| Failure::Input(format!("{}: {e}", bundle.display())))?;
            let record = client.push(archive).await?;
            if json {
                print_json(&record);
            } else {
                println!(
                    "pushed {} {} ({})",
                    record.name, record.version, record.digest
                );
            }
        }
        RemoteCommand::List { .. } => {
            let bundles = client.bundles().await?;
            if json {
                print_json(&bundles);
            } else {
                for b in bundles {
                    println!(
                        "{} {} {} {} bytes, pushed by {} at {}{}",
                        b.name,
                        b.version,
                        b.digest,
                        b.size,
                        b.uploaded_by,
                        b.uploaded_at,
                        b.signed_by
                            .map(|k| format!(", signed by {k}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        RemoteCommand::Promote {
            name,
            version,
            selector,
            canary,
            ..
        } => {
            let promotion = client
                .promote(&PromoteRequest {
                    name,
                    version,
                    selector: selector.into_iter().collect::<BTreeMap<_, _>>(),
                    canary,
                })
                .await?;
            if json {
                print_json(&promotion);
            } else {
                println!(
                    "promotion {}: {} {} to proxies {} ({:?})",
                    promotion.id,
                    promotion.name,
                    promotion.version,
                    show_labels(&promotion.selector),
                    promotion.stage
                );
            }
        }
        RemoteCommand::Rollback { name, version, .. } => {
            let promotion = client.rollback(&RollbackRequest { name, version }).await?;
            if json {
                print_json(&promotion);
            } else {
                println!(
                    "promotion {}: rolled back to {} {}",
                    promotion.id, promotion.name, promotion.version
                );
            }
        }
        RemoteCommand::Status { .. } => {
            let status = client.status().await?;
            if json {
                print_json(&status);
            } else {
                for (id, proxy) in &status.proxies {
                    let desired = proxy.desired.as_ref().map_or_else(
                        || "nothing".to_string(),
                        |d| format!("{} {}", d.name, d.version),
                    );
                    println!(
                        "{id} [{}] should run {desired}: {}{} (last seen {})",
                        show_labels(&proxy.record.labels),
                        proxy.state,
                        proxy
                            .record
                            .reason
                            .as_ref()
                            .filter(|_| proxy.state == "nack")
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default(),
                        proxy.record.last_seen
                    );
                }
            }
        }
        RemoteCommand::History { .. } => {
            let history = client.history().await?;
            if json {
                print_json(&history);
            } else {
                for entry in history {
                    println!(
                        "{} {} {} {}",
                        entry.at, entry.who, entry.action, entry.detail
                    );
                }
            }
        }
    }
    Ok(())
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(all)".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Subcommand)]
pub(crate) enum ControlCommand {
    /// Run the control endpoint.
    Serve {
        /// Its configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make an API token: prints the token (give it to the caller) and the
    /// `tokens:` entry for the endpoint's configuration.
    Token {
        /// The token's name, recorded in the history.
        #[arg(long)]
        name: String,
        /// admin, reader or proxy.
        #[arg(long)]
        role: String,
        /// Write the token to this file (readable by its owner only)
        /// instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(crate) fn control(command: ControlCommand) -> ExitCode {
    match command {
        ControlCommand::Serve { config } => serve(&config),
        ControlCommand::Token { name, role, out } => match token(&name, &role, out.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

fn token(name: &str, role: &str, out: Option<&Path>) -> Result<(), String> {
    if !["admin", "reader", "proxy"].contains(&role) {
        return Err(format!("role `{role}`: give admin, reader or proxy"));
    }
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no randomness".to_string())?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let entry = format!(
        "  - {{name: {name}, role: {role}, sha256: {}}}",
        weft_bundle::sha256_hex(token.as_bytes())
    );
    match out {
        Some(path) => {
            crate::bundle::write_private(path, &token)?;
            println!("{entry}");
        }
        None => println!("token: {token}\n{entry}"),
    }
    Ok(())
}

fn serve(file: &Path) -> ExitCode {
    let config = match weft_control::config::load(file) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let control = match weft_control::Control::start(config) {
        Ok(control) => control,
        Err(err) => {
            eprintln!("error: {}: {err}", file.display());
            return ExitCode::from(2);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let scheme = if control.tls { "https" } else { "http" };
        let _ = writeln!(out, "listening: control {scheme}://{}", control.address);
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    if let Err(err) = crate::wait_for_signal() {
        eprintln!("error: cannot wait for signals: {err}");
        return ExitCode::FAILURE;
    }
    tracing::info!("shutting down");
    control.shutdown();
    ExitCode::SUCCESS
}

//! TLS with rustls (the `ring` provider): listener termination with SNI
//! certificate selection, client certificates (mTLS) and reloading of
//! changed certificate files; TLS to upstream clusters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::sync::watch;
use weft_config::{CertificateFiles, ListenerTls, UpstreamTls};

/// Why TLS material could not be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{field}: {}: {problem}", file.display())]
    File {
        /// The config field that names the file.
        field: String,
        /// The file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the combination.
    #[error("{field}: {problem}")]
    Setup {
        /// The config field at fault.
        field: String,
        /// What rustls said.
        problem: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(field: &str, file: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        field: field.to_string(),
        file: file.to_path_buf(),
        problem: problem.to_string(),
    }
}

fn load_certs(field: &str, file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| file_error(field, file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(field, file, e))?;
    if certs.is_empty() {
        return Err(file_error(field, file, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn load_key(field: &str, file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| file_error(field, file, e))
}

fn load_roots(field: &str, file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(field, file)? {
        roots
            .add(cert)
            .map_err(|e| file_error(field, file, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A certificate and key loaded from their files, checked to belong together.
fn load_pair(field: &str, files: &CertificateFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(&format!("{field}.cert"), &files.cert)?;
    let key = load_key(&format!("{field}.key"), &files.key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(&format!("{field}.key"), &files.key, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| TlsError::Setup {
        field: field.to_string(),
        problem: format!("the key does not belong to the certificate: {e}"),
    })?;
    Ok(Arc::new(certified))
}

fn modified(files: &CertificateFiles) -> Option<(SystemTime, SystemTime)> {
    let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((time(&files.cert)?, time(&files.key)?))
}

/// One configured certificate and what is loaded from it now.
#[derive(Debug)]
struct CertSlot {
    field: String,
    files: CertificateFiles,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Option<(SystemTime, SystemTime)>>,
}

/// A listener's certificates, chosen by SNI; reloaded when their files change.
#[derive(Debug)]
pub(crate) struct CertStore {
    slots: Vec<CertSlot>,
    pub(crate) interval: Duration,
}

impl CertStore {
    fn new(at: &str, tls: &ListenerTls) -> Result<CertStore, TlsError> {
        let slots = tls
            .certificates
            .iter()
            .enumerate()
            .map(|(i, files)| {
                let field = format!("{at}.certificates[{i}]");
                Ok(CertSlot {
                    current: RwLock::new(load_pair(&field, files)?),
                    stamp: Mutex::new(modified(files)),
                    files: files.clone(),
                    field,
                })
            })
            .collect::<Result<_, TlsError>>()?;
        Ok(CertStore {
            slots,
            interval: Duration::from_millis(tls.reload_interval_ms),
        })
    }

    /// Loads the certificates whose files changed; one that fails to load
    /// keeps serving the old pair, and the failure is logged.
    pub(crate) fn reload_changed(&self) {
        for slot in &self.slots {
            let now = modified(&slot.files);
            let Ok(mut stamp) = slot.stamp.lock() else {
                continue;
            };
            if now.is_none() || now == *stamp {
                continue;
            }
            *stamp = now;
            match load_pair(&slot.field, &slot.files) {
                Ok(pair) => {
                    if let Ok(mut current) = slot.current.write() {
                        *current = pair;
                    }
                    tracing::info!(
                        cert = %slot.files.cert.display(),
                        "certificate reloaded"
                    );
                }
                Err(err) => tracing::error!("certificate not reloaded, the old one stays: {err}"),
            }
        }
    }

    fn current(&self, slot: &CertSlot) -> Option<Arc<CertifiedKey>> {
        let _ = self;
        slot.current.read().ok().map(|c| c.clone())
    }
}

/// Whether `pattern` (`name` or `*.suffix`) covers `name`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|sni| {
            self.slots.iter().find(|slot| {
                slot.files
                    .server_names
                    .iter()
                    .any(|pattern| name_matches(pattern, sni))
            })
        });
        self.current(chosen.or(self.slots.first())?)
    }
}

/// A TLS listener's acceptor and certificate store.
pub(crate) struct ServerTls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) store: Arc<CertStore>,
}

impl ServerTls {
    /// Builds listener `index`'s TLS from `tls`; offers h2 by ALPN when
    /// `http2`.
    pub(crate) fn new(index: usize, tls: &ListenerTls, http2: bool) -> Result<ServerTls, TlsError> {
        let at = format!("listeners[{index}].tls");
        let store = Arc::new(CertStore::new(&at, tls)?);
        let setup = |problem: String| TlsError::Setup {
            field: at.clone(),
            problem,
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?;
        let builder = match &tls.client_ca {
            Some(ca) => {
                let roots = load_roots(&format!("{at}.client_ca"), ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if tls.require_client_certificate.unwrap_or(true) {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| setup(format!("client_ca: {e}")))?,
                )
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(store.clone());
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            store,
        })
    }
}

/// Starts the thread that reloads changed certificate files, if any
/// listener has TLS; it stops when `shutdown` turns true.
pub(crate) fn start_reloader(
    stores: Vec<Arc<CertStore>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let Some(interval) = stores.iter().map(|s| s.interval).min() else {
        return Ok(None);
    };
    let handle = std::thread::Builder::new()
        .name("weft-tls-reload".into())
        .spawn(move || {
            let step = interval.min(Duration::from_millis(100));
            let mut waited = Duration::ZERO;
            while !*shutdown.borrow() {
                std::thread::sleep(step);
                waited += step;
                if waited >= interval {
                    waited = Duration::ZERO;
                    stores.iter().for_each(|s| s.reload_changed());
                }
            }
        })?;
    Ok(Some(handle))
}

/// What a TLS handshake established, for properties and logs.
#[derive(Debug, Default)]
pub(crate) struct TlsInfo {
    /// ALPN chose HTTP/2.
    pub(crate) h2: bool,
    pub(crate) server_name: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) peer: Option<PeerIdentity>,
}

/// The client's certificate, as properties show it.
#[derive(Debug, Default)]
pub(crate) struct PeerIdentity {
    pub(crate) subject: String,
    pub(crate) uri_sans: Vec<String>,
    pub(crate) dns_sans: Vec<String>,
    pub(crate) sha256: String,
}

impl TlsInfo {
    pub(crate) fn of(connection: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo {
            h2: connection.alpn_protocol() == Some(b"h2"),
            server_name: connection.server_name().map(str::to_string),
            version: connection.protocol_version().map(|v| {
                match v {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                    rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
                    _ => "TLS",
                }
                .to_string()
            }),
            peer: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| PeerIdentity::of(leaf.as_ref())),
        }
    }
}

impl PeerIdentity {
    fn of(der: &[u8]) -> PeerIdentity {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut identity = PeerIdentity {
            sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            ..Default::default()
        };
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            identity.subject = cert.subject().to_string();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::URI(uri) => {
                            identity.uri_sans.push((*uri).to_string())
                        }
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            identity.dns_sans.push((*dns).to_string())
                        }
                        _ => {}
                    }
                }
            }
        }
        identity
    }
}

/// TLS to a cluster's endpoints.
pub(crate) struct ClientTls {
    pub(crate) connector: tokio_rustls::TlsConnector,
    /// The name certificates are checked against; `None`: each endpoint's host.
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    pub(crate) fn new(index: usize, tls: &UpstreamTls, http2: bool) -> Result<ClientTls, TlsError> {
        let at = format!("clusters[{index}].tls");
        let setup = |problem: String| TlsError::Setup {
            field: at.clone(),
            problem,
        };
        let roots = match &tls.ca {
            Some(ca) => load_roots(&format!("{at}.ca"), ca)?,
            None => {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
                roots
            }
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    load_certs(&format!("{at}.cert"), cert)?,
                    load_key(&format!("{at}.key"), key)?,
                )
                .map_err(|e| setup(format!("client certificate: {e}")))?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let server_name = tls
            .server_name
            .as_ref()
            .map(|name| {
                ServerName::try_from(name.clone())
                    .map_err(|e| setup(format!("server_name `{name}`: {e}")))
            })
            .transpose()?;
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_patterns() {
        assert!(name_matches("api.example.com", "API.example.com"));
        assert!(name_matches("*.example.com", "api.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
    }
}

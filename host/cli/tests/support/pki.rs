//! Test TLS material made with rcgen: a CA, certificates it signs, and
//! TLS clients and servers that use them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::Got;

/// A CA whose files live in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "weft test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `dns` names (and a URI SAN), with common
    /// name `name`, written to NAME.crt and NAME.key.
    pub fn issue(&self, name: &str, dns: &[&str], uri: Option<&str>) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        // Written whole then renamed, so that a watcher never sees half a file.
        for (file, text) in [(&cert_file, cert.pem()), (&key_file, key.serialize_pem())] {
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, file).unwrap();
        }
        (cert_file, key_file)
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }

    /// A client config trusting this CA, offering `alpn`, presenting the
    /// certificate `client` if given.
    pub fn client(
        &self,
        client: Option<&(PathBuf, PathBuf)>,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots());
        let mut config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A server config with `cert`, offering `alpn`.
    pub fn server(&self, cert: &(PathBuf, PathBuf), alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                CertificateDer::pem_file_iter(&cert.0)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_file(&cert.1).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// What a TLS exchange gave: the response, the HTTP version it came in,
/// and the server's certificate.
pub struct TlsGot {
    pub got: Got,
    pub version: http::Version,
    pub server_cert: Vec<u8>,
}

/// Sends GET `path` over TLS to `addr` with SNI `name`; HTTP/2 when ALPN
/// picks it. Errors (handshake refused, connection reset) come back as text.
pub fn get_tls(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<TlsGot, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = connector
            .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (_, connection) = tls.get_ref();
        let server_cert = connection.peer_certificates().unwrap()[0].to_vec();
        let h2 = connection.alpn_protocol() == Some(b"h2");
        let mut request = Request::get(format!("https://{name}{path}"));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = if h2 {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            let request = request.body(Full::new(Bytes::new())).unwrap();
            sender.send_request(request).await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("h1 handshake: {e}"))?;
            tokio::spawn(conn);
            let request = request
                .uri(path)
                .header("host", name)
                .body(Full::new(Bytes::new()))
                .unwrap();
            sender.send_request(request).await
        }
        .map_err(|e| format!("request: {e}"))?;
        let version = response.version();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(TlsGot {
            got: Got {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            version,
            server_cert,
        })
    })
}

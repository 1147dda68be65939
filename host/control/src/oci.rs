//! Bundles in OCI registries, as Wasm plugins are shipped to Istio: a
//! reference `oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]` names an OCI
//! artifact whose one layer is the bundle archive
//! (`application/vnd.weft.bundle.layer.v1.tar+gzip`) and whose config is a
//! JSON summary of it (`application/vnd.weft.bundle.config.v1+json`).
//! Registries on loopback are spoken to over plain HTTP, others over
//! HTTPS. Anonymous access only in this build.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;

use crate::http::{Answer, Target, exchange};

/// The layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.weft.bundle.layer.v1.tar+gzip";
/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.weft.bundle.config.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    target_host: String,
    /// The repository, e.g. `policies/shop`.
    pub repository: String,
    /// A tag or `sha256:<hex>`.
    pub reference: String,
}

/// Why a registry exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference cannot be used.
    #[error("`{given}`: {problem}")]
    Reference {
        /// What was given.
        given: String,
        /// What is wrong.
        problem: String,
    },
    /// The registry could not be reached.
    #[error("registry {registry}: {problem}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// What happened.
        problem: String,
    },
    /// The registry refused, or answered something unusable.
    #[error("registry {registry}: {problem}")]
    Refused {
        /// The registry.
        registry: String,
        /// What it said.
        problem: String,
    },
}

impl OciRef {
    /// Parses `oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]` (tag
    /// `latest` when neither is given).
    pub fn parse(given: &str) -> Result<OciRef, OciError> {
        let fail = |problem: &str| OciError::Reference {
            given: given.to_string(),
            problem: problem.to_string(),
        };
        let rest = given
            .strip_prefix("oci://")
            .ok_or_else(|| fail("write oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| fail("no repository after the registry"))?;
        let (repository, reference) = if let Some((repo, digest)) = path.split_once('@') {
            (repo, digest.to_string())
        } else {
            match path.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, tag.to_string()),
                _ => (path, "latest".to_string()),
            }
        };
        if registry.is_empty() || repository.is_empty() || reference.is_empty() {
            return Err(fail("registry, repository and tag must not be empty"));
        }
        let valid_repo = repository
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
        if !valid_repo {
            return Err(fail("a repository is lower-case letters, digits and ._-/"));
        }
        Ok(OciRef {
            target_host: registry.to_string(),
            repository: repository.to_string(),
            reference,
        })
    }

    /// The registry, `host[:port]`.
    pub fn registry(&self) -> &str {
        &self.target_host
    }

    fn target(&self) -> Result<Target, OciError> {
        let host = self
            .target_host
            .rsplit_once(':')
            .map_or(self.target_host.as_str(), |(h, _)| h);
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        Target::new(!loopback, &self.target_host).map_err(|problem| OciError::Reference {
            given: self.target_host.clone(),
            problem,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, OciError> {
        let target = self.target()?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.target_host);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| self.refused(e.to_string()))?;
        exchange(&target, request, TIMEOUT)
            .await
            .map_err(|problem| OciError::Unreachable {
                registry: self.target_host.clone(),
                problem,
            })
    }

    fn refused(&self, problem: String) -> OciError {
        OciError::Refused {
            registry: self.target_host.clone(),
            problem,
        }
    }

    fn expect(&self, answer: &Answer, want: &[StatusCode], what: &str) -> Result<(), OciError> {
        if want.contains(&answer.status) {
            return Ok(());
        }
        Err(self.refused(format!(
            "{what}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body).trim()
        )))
    }

    /// Uploads a blob unless the registry has it.
    async fn put_blob(&self, bytes: &[u8]) -> Result<String, OciError> {
        let digest = format!("sha256:{}", weft_bundle::sha256_hex(bytes));
        let repo = &self.repository;
        let head = self
            .call(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                &[],
                Bytes::new(),
            )
            .await?;
        if head.status == StatusCode::OK {
            return Ok(digest);
        }
        let start = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Bytes::new(),
            )
            .await?;
        self.expect(&start, &[StatusCode::ACCEPTED], "starting an upload")?;
        let location = start
            .headers
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| self.refused("no Location for the upload".into()))?;
        // The location may be absolute; the registry is the same.
        let path = match location.parse::<http::Uri>() {
            Ok(uri) if uri.authority().is_some() => uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            _ => location.to_string(),
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        let put = self
            .call(
                Method::PUT,
                &format!("{path}{separator}digest={digest}"),
                &[(
                    header::CONTENT_TYPE.as_str(),
                    "application/octet-stream".into(),
                )],
                Bytes::copy_from_slice(bytes),
            )
            .await?;
        self.expect(
            &put,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT],
            "uploading a blob",
        )?;
        Ok(digest)
    }

    /// Pushes a bundle archive, described by `config` (a JSON summary),
    /// under this reference's tag; returns the manifest's digest.
    pub async fn push(
        &self,
        archive: &[u8],
        config: &serde_json::Value,
    ) -> Result<String, OciError> {
        if self.reference.starts_with("sha256:") {
            return Err(OciError::Reference {
                given: self.reference.clone(),
                problem: "push to a tag, not a digest".into(),
            });
        }
        let config = serde_json::to_vec(config).unwrap_or_default();
        let config_digest = self.put_blob(&config).await?;
        let layer_digest = self.put_blob(archive).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": layer_digest,
                "size": archive.len(),
                "annotations": {"org.opencontainers.image.title": "bundle.tar.gz"},
            }],
        });
        let body = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
        let digest = format!("sha256:{}", weft_bundle::sha256_hex(&body));
        let put = self
            .call(
                Method::PUT,
                &format!("/v2/{}/manifests/{}", self.repository, self.reference),
                &[(header::CONTENT_TYPE.as_str(), MANIFEST_MEDIA_TYPE.into())],
                body,
            )
            .await?;
        self.expect(&put, &[StatusCode::CREATED], "pushing the manifest")?;
        Ok(digest)
    }

    /// The manifest this reference names now, and its digest.
    pub async fn manifest(&self) -> Result<(String, serde_json::Value), OciError> {
        let answer = self
            .call(
                Method::GET,
                &format!("/v2/{}/manifests/{}", self.repository, self.reference),
                &[(header::ACCEPT.as_str(), MANIFEST_MEDIA_TYPE.into())],
                Bytes::new(),
            )
            .await?;
        self.expect(&answer, &[StatusCode::OK], "fetching the manifest")?;
        let digest = format!("sha256:{}", weft_bundle::sha256_hex(&answer.body));
        if self.reference.starts_with("sha256:") && digest != self.reference {
            return Err(self.refused(format!(
                "the manifest has digest {digest}, not the {} asked for",
                self.reference
            )));
        }
        let manifest = serde_json::from_slice(&answer.body)
            .map_err(|e| self.refused(format!("the manifest is not JSON: {e}")))?;
        Ok((digest, manifest))
    }

    /// The bundle archive `manifest` names, its digest checked.
    pub async fn layer(&self, manifest: &serde_json::Value) -> Result<Vec<u8>, OciError> {
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let layer = layers
            .iter()
            .find(|l| l["mediaType"] == LAYER_MEDIA_TYPE)
            .ok_or_else(|| {
                self.refused(format!(
                    "the artifact has no {LAYER_MEDIA_TYPE} layer: it is not a weft bundle"
                ))
            })?;
        let digest = layer["digest"]
            .as_str()
            .ok_or_else(|| self.refused("a layer without a digest".into()))?;
        let answer = self
            .call(
                Method::GET,
                &format!("/v2/{}/blobs/{digest}", self.repository),
                &[],
                Bytes::new(),
            )
            .await?;
        self.expect(&answer, &[StatusCode::OK], "fetching the bundle layer")?;
        let actual = format!("sha256:{}", weft_bundle::sha256_hex(&answer.body));
        if actual != digest {
            return Err(self.refused(format!("the layer has digest {actual}, not {digest}")));
        }
        Ok(answer.body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_istio_s() {
        let r = OciRef::parse("oci://127.0.0.1:5000/policies/shop:1.4.0").unwrap();
        assert_eq!(
            (r.registry(), r.repository.as_str(), r.reference.as_str()),
            ("127.0.0.1:5000", "policies/shop", "1.4.0")
        );
        let r = OciRef::parse("oci://ghcr.io/acme/shop").unwrap();
        assert_eq!(r.reference, "latest");
        let r = OciRef::parse("oci://reg:5000/shop@sha256:abc").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.reference.as_str()),
            ("shop", "sha256:abc")
        );
        assert!(OciRef::parse("docker://x/y").is_err());
        assert!(OciRef::parse("oci://x").is_err());
        assert!(OciRef::parse("oci://x/Upper").is_err());
    }
}

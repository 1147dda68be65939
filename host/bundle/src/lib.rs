//! Filter bundles: a versioned, content-addressed unit of policy.
//!
//! A bundle is a manifest (name, version, the labels of the proxies it
//! targets, and its plugins — each a module plus its configuration,
//! failure policy and limits, in the proxy configuration's `plugins`
//! schema) and the `.wasm` modules it references by SHA-256, in one
//! `.tar.gz` archive:
//!
//! - `manifest.json` — the manifest, each plugin's `module` rewritten to
//!   `modules/<sha256>.wasm`; the bundle's digest is the SHA-256 of these
//!   exact bytes, so it covers every module too;
//! - `modules/<sha256>.wasm` — each module once;
//! - `signature.json` (optional) — an ed25519 signature of `manifest.json`
//!   and the public key that made it.
//!
//! Bundles are built from a directory holding `bundle.yaml` and the module
//! files it names, `.wasm` or `.wat` (assembled to binary)
//! ([`Bundle::from_dir`]), read back with every hash checked
//! ([`Bundle::from_archive`]), signed ([`Bundle::sign`]) and verified
//! against trusted keys ([`Bundle::verify`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// The largest archive (compressed) or module weft reads.
pub const MAX_ARCHIVE_BYTES: u64 = 64 << 20;
/// The most bytes an archive may unpack to.
pub const MAX_UNPACKED_BYTES: u64 = 256 << 20;

/// What a bundle says about itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The bundle's name: one policy, many versions.
    pub name: String,
    /// This version, as its authors number them (e.g. `1.4.0`).
    pub version: String,
    /// The proxies it is for: a proxy takes it only if its own labels
    /// include every one of these. Default: every proxy.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its plugins, in the proxy configuration's `plugins` schema: each
    /// replaces the proxy's plugin of the same name, or is added to the
    /// proxy when it has none (for the bundle's routes or chains to run).
    #[serde(default)]
    pub plugins: Vec<weft_config::Plugin>,
    /// Route policy and filter chains for some of the proxy's listeners,
    /// by name; the others keep what the proxy's config gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerPolicy>,
}

/// What a bundle sets for one listener of the proxy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerPolicy {
    /// The listener's name in the proxy's config.
    pub name: String,
    /// The plugins run on every request, in order (replacing the
    /// listener's `filters`); a route may still give its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<String>>,
    /// Virtual hosts and routes, in the proxy configuration's schema
    /// (replacing the listener's `virtual_hosts` or `cluster`); clusters
    /// are the proxy's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_hosts: Option<Vec<weft_config::VirtualHost>>,
}

/// An ed25519 signature of a bundle's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The public key that made it (base64 of 32 bytes).
    pub key: String,
    /// The signature of `manifest.json` (base64).
    pub signature: String,
}

/// A bundle in memory: manifest, modules by hash, maybe a signature.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest, modules named `modules/<sha256>.wasm`.
    pub manifest: Manifest,
    /// `manifest.json` exactly as signed and hashed.
    manifest_json: Vec<u8>,
    /// Module bytes by SHA-256 (hex).
    modules: BTreeMap<String, Vec<u8>>,
    /// The signature, if the bundle was signed.
    pub signature: Option<Signature>,
}

/// Why a bundle was refused. Each names the input and the problem.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// `bundle.yaml` does not parse.
    #[error("{}: field `{field}`: {message}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Where in it.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The manifest parses but says something impossible.
    #[error("bundle manifest: {0}")]
    Invalid(String),
    /// The archive is damaged or not a bundle.
    #[error("bundle archive: {0}")]
    Corrupt(String),
    /// A module's bytes do not hash to the name the manifest gives.
    #[error("bundle archive: module {name} has SHA-256 {actual}: its content was changed")]
    HashMismatch {
        /// The module's name in the archive.
        name: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// The archive or a module is over a size limit.
    #[error("bundle archive: {what} is over the limit of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Trusted keys are configured and the bundle is not signed.
    #[error("bundle `{name}` {version} is not signed, and this proxy only takes signed bundles")]
    Unsigned {
        /// The bundle.
        name: String,
        /// Its version.
        version: String,
    },
    /// The bundle is signed by a key that is not trusted.
    #[error("bundle `{name}` {version} is signed by key {key_id}, which is not trusted here")]
    UntrustedKey {
        /// The bundle.
        name: String,
        /// Its version.
        version: String,
        /// The key's id.
        key_id: String,
    },
    /// The signature does not match the manifest.
    #[error("bundle `{name}` {version}: the signature does not match its manifest (key {key_id})")]
    BadSignature {
        /// The bundle.
        name: String,
        /// Its version.
        version: String,
        /// The key's id.
        key_id: String,
    },
    /// A key cannot be used.
    #[error("key: {0}")]
    Key(String),
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn module_name(sha256: &str) -> String {
    format!("modules/{sha256}.wasm")
}

impl Bundle {
    /// Builds a bundle from `dir/bundle.yaml` and the module files it names
    /// (relative to `dir`).
    pub fn from_dir(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join("bundle.yaml");
        let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Io {
            path: path.clone(),
            source,
        })?;
        let mut manifest: Manifest =
            weft_config::from_yaml(&text).map_err(|err| BundleError::Manifest {
                path: path.clone(),
                field: err.path().to_string(),
                message: err.inner().to_string(),
            })?;
        let mut modules = BTreeMap::new();
        for plugin in &mut manifest.plugins {
            let file = dir.join(&plugin.module);
            // Modules are stored as binary: a text (.wat) one is assembled.
            let bytes = wat::parse_bytes(&read_limited(&file)?)
                .map_err(|e| BundleError::Invalid(format!("{}: {e}", file.display())))?
                .into_owned();
            let sha256 = sha256_hex(&bytes);
            plugin.module = PathBuf::from(module_name(&sha256));
            modules.insert(sha256, bytes);
        }
        Bundle::assemble(manifest, modules, None)
    }

    /// Checks `manifest` and fixes its bytes.
    fn assemble(
        manifest: Manifest,
        modules: BTreeMap<String, Vec<u8>>,
        signature: Option<Signature>,
    ) -> Result<Bundle, BundleError> {
        validate(&manifest)?;
        let manifest_json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BundleError::Invalid(e.to_string()))?;
        Ok(Bundle {
            manifest,
            manifest_json,
            modules,
            signature,
        })
    }

    /// Reads an archive, checking that every module hashes to its name,
    /// that the manifest names only modules present, and the size limits.
    pub fn from_archive(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
            return Err(BundleError::TooLarge {
                what: "the archive".into(),
                limit: MAX_ARCHIVE_BYTES,
            });
        }
        let corrupt = |e: std::io::Error| BundleError::Corrupt(e.to_string());
        let gz = flate2::read::GzDecoder::new(bytes);
        let mut archive = tar::Archive::new(gz.take(MAX_UNPACKED_BYTES + 1));
        let mut manifest_json = None;
        let mut signature = None;
        let mut modules = BTreeMap::new();
        let mut unpacked = 0u64;
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let name = entry
                .path()
                .map_err(corrupt)?
                .to_str()
                .ok_or_else(|| BundleError::Corrupt("an entry's name is not UTF-8".into()))?
                .to_string();
            unpacked += entry.size();
            if unpacked > MAX_UNPACKED_BYTES {
                return Err(BundleError::TooLarge {
                    what: "the unpacked archive".into(),
                    limit: MAX_UNPACKED_BYTES,
                });
            }
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(corrupt)?;
            match name.as_str() {
                "manifest.json" => manifest_json = Some(content),
                "signature.json" => {
                    signature = Some(
                        serde_json::from_slice::<Signature>(&content)
                            .map_err(|e| BundleError::Corrupt(format!("signature.json: {e}")))?,
                    );
                }
                _ => {
                    let Some(sha256) = name
                        .strip_prefix("modules/")
                        .and_then(|n| n.strip_suffix(".wasm"))
                    else {
                        return Err(BundleError::Corrupt(format!(
                            "unexpected entry `{name}` (a bundle holds manifest.json, signature.json and modules/<sha256>.wasm)"
                        )));
                    };
                    let actual = sha256_hex(&content);
                    if actual != sha256 {
                        return Err(BundleError::HashMismatch { name, actual });
                    }
                    modules.insert(actual, content);
                }
            }
        }
        let manifest_json = manifest_json
            .ok_or_else(|| BundleError::Corrupt("no manifest.json in the archive".into()))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_json)
            .map_err(|e| BundleError::Corrupt(format!("manifest.json: {e}")))?;
        validate(&manifest)?;
        for plugin in &manifest.plugins {
            let sha256 = sha256_of_module(plugin)?;
            if !modules.contains_key(sha256) {
                return Err(BundleError::Corrupt(format!(
                    "plugin `{}` names module {} which is not in the archive",
                    plugin.name,
                    plugin.module.display()
                )));
            }
        }
        Ok(Bundle {
            manifest,
            manifest_json,
            modules,
            signature,
        })
    }

    /// The archive: `manifest.json`, the modules, and the signature if
    /// signed. The same bundle always gives the same bytes.
    pub fn to_archive(&self) -> Result<Vec<u8>, BundleError> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut archive = tar::Builder::new(gz);
        let mut add = |name: &str, content: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            archive
                .append_data(&mut header, name, content)
                .map_err(|e| BundleError::Corrupt(e.to_string()))
        };
        add("manifest.json", &self.manifest_json)?;
        if let Some(signature) = &self.signature {
            let json = serde_json::to_vec_pretty(signature)
                .map_err(|e| BundleError::Corrupt(e.to_string()))?;
            add("signature.json", &json)?;
        }
        for (sha256, module) in &self.modules {
            add(&module_name(sha256), module)?;
        }
        archive
            .into_inner()
            .and_then(flate2::write::GzEncoder::finish)
            .map_err(|e| BundleError::Corrupt(e.to_string()))
    }

    /// `sha256:<hex>` of the manifest, which names every module by hash.
    pub fn digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.manifest_json))
    }

    /// The bytes of `plugin`'s module.
    pub fn module(&self, plugin: &weft_config::Plugin) -> Option<&[u8]> {
        let sha256 = sha256_of_module(plugin).ok()?;
        self.modules.get(sha256).map(Vec::as_slice)
    }

    /// Signs the manifest with `key` (replacing any signature).
    pub fn sign(&mut self, key: &SigningKey) {
        let signature = key.pair.sign(&self.manifest_json);
        self.signature = Some(Signature {
            key: BASE64.encode(key.pair.public_key().as_ref()),
            signature: BASE64.encode(signature.as_ref()),
        });
    }

    /// Checks the signature against `trusted` keys: the bundle must be
    /// signed, by one of them, and the signature must match.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<PublicKey, BundleError> {
        let (name, version) = (self.manifest.name.clone(), self.manifest.version.clone());
        let Some(signature) = &self.signature else {
            return Err(BundleError::Unsigned { name, version });
        };
        let key = PublicKey::parse(&signature.key)?;
        if !trusted.contains(&key) {
            return Err(BundleError::UntrustedKey {
                name,
                version,
                key_id: key.id(),
            });
        }
        let bad = || BundleError::BadSignature {
            name: name.clone(),
            version: version.clone(),
            key_id: key.id(),
        };
        let bytes = BASE64.decode(&signature.signature).map_err(|_| bad())?;
        UnparsedPublicKey::new(&ED25519, &key.0)
            .verify(&self.manifest_json, &bytes)
            .map_err(|_| bad())?;
        Ok(key)
    }
}

/// The hash a plugin's `module` (`modules/<sha256>.wasm`) names.
fn sha256_of_module(plugin: &weft_config::Plugin) -> Result<&str, BundleError> {
    plugin
        .module
        .to_str()
        .and_then(|m| m.strip_prefix("modules/"))
        .and_then(|m| m.strip_suffix(".wasm"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            BundleError::Corrupt(format!(
                "plugin `{}`: module `{}` is not modules/<sha256>.wasm",
                plugin.name,
                plugin.module.display()
            ))
        })
}

fn validate(manifest: &Manifest) -> Result<(), BundleError> {
    let invalid = |m: String| Err(BundleError::Invalid(m));
    for (field, value) in [("name", &manifest.name), ("version", &manifest.version)] {
        if let Some(problem) = label_problem(value) {
            return invalid(format!("`{field}` {problem}"));
        }
    }
    if manifest.plugins.is_empty() && manifest.listeners.is_empty() {
        return invalid(
            "`plugins` and `listeners` are empty: a bundle carries at least one plugin or listener policy"
                .into(),
        );
    }
    for (i, listener) in manifest.listeners.iter().enumerate() {
        if manifest.listeners[..i]
            .iter()
            .any(|l| l.name == listener.name)
        {
            return invalid(format!(
                "listeners[{i}]: the listener `{}` is named twice",
                listener.name
            ));
        }
        if listener.filters.is_none() && listener.virtual_hosts.is_none() {
            return invalid(format!(
                "listeners[{i}] (`{}`): give `filters`, `virtual_hosts` or both",
                listener.name
            ));
        }
        if listener.virtual_hosts.as_ref().is_some_and(Vec::is_empty) {
            return invalid(format!(
                "listeners[{i}] (`{}`): `virtual_hosts` is empty: the listener would route nothing",
                listener.name
            ));
        }
    }
    for (i, plugin) in manifest.plugins.iter().enumerate() {
        if manifest.plugins[..i].iter().any(|p| p.name == plugin.name) {
            return invalid(format!(
                "plugins[{i}]: the name `{}` is used twice",
                plugin.name
            ));
        }
        if plugin.watch {
            return invalid(format!(
                "plugins[{i}] (`{}`): `watch` is for plugins in a proxy's own config, not in bundles",
                plugin.name
            ));
        }
        // Every proxy would refuse it: say so when it is built.
        if plugin.allowed_host_functions.is_some() || plugin.allowed_clusters.is_some() {
            return invalid(format!(
                "plugins[{i}] (`{}`): `allowed_host_functions` and `allowed_clusters` are granted by the proxy's own config, not by bundles",
                plugin.name
            ));
        }
    }
    Ok(())
}

/// Why `value` cannot be a bundle's name or version, if it cannot. They
/// name files (`NAME-VERSION.bundle.tar.gz`) and appear in URLs, logs and
/// metrics: letters, digits, `.`, `_`, `-` and `+`, not starting with `.`
/// (so never `..`), at most 128 characters.
fn label_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    if value.len() > 128 {
        return Some(format!("is {} characters long: at most 128", value.len()));
    }
    if value.starts_with('.') {
        return Some(format!("`{value}` starts with `.`"));
    }
    value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
        .map(|c| format!("`{value}` has `{c}`: use letters, digits, `.`, `_`, `-` and `+` only"))
}

fn read_limited(path: &Path) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_ARCHIVE_BYTES {
        return Err(BundleError::TooLarge {
            what: path.display().to_string(),
            limit: MAX_ARCHIVE_BYTES,
        });
    }
    std::fs::read(path).map_err(io)
}

/// An ed25519 key pair that signs bundles.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key, and its PKCS#8 encoding (base64) to store.
    pub fn generate() -> Result<(SigningKey, String), BundleError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| BundleError::Key("cannot generate a key".into()))?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, BASE64.encode(pkcs8.as_ref())))
    }

    /// A key from its stored form: base64 of PKCS#8.
    pub fn parse(text: &str) -> Result<SigningKey, BundleError> {
        let der = BASE64
            .decode(text.trim())
            .map_err(|e| BundleError::Key(format!("not base64: {e}")))?;
        SigningKey::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, BundleError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| BundleError::Key(format!("not an ed25519 PKCS#8 key: {e}")))?;
        Ok(SigningKey { pair })
    }

    /// Its public half.
    pub fn public_key(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }
}

/// The message of a key error without its variant's prefix.
fn key_problem(error: BundleError) -> String {
    match error {
        BundleError::Key(problem) => problem,
        other => other.to_string(),
    }
}

/// An ed25519 public key that bundles may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// A key from base64 of its 32 bytes.
    pub fn parse(text: &str) -> Result<PublicKey, BundleError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| BundleError::Key(format!("public key is not base64: {e}")))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            BundleError::Key(format!(
                "an ed25519 public key is 32 bytes, this one {}",
                b.len()
            ))
        })?;
        Ok(PublicKey(key))
    }

    /// A key given as a `.pub` file or as its base64 text, as config
    /// files and command lines give trusted keys. A file that cannot be
    /// read is named as such, and so is text that is neither base64 nor
    /// an existing file.
    pub fn read(given: &str) -> Result<PublicKey, BundleError> {
        let path = Path::new(given);
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|source| BundleError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            return PublicKey::parse(&text)
                .map_err(|e| BundleError::Key(format!("{given}: {}", key_problem(e))));
        }
        PublicKey::parse(given).map_err(|e| {
            BundleError::Key(format!(
                "`{given}` is neither a file (none by that name) nor a base64 public key ({})",
                key_problem(e)
            ))
        })
    }

    /// Base64 of its 32 bytes.
    pub fn encode(&self) -> String {
        BASE64.encode(self.0)
    }

    /// A short id for logs: the first 8 bytes of its SHA-256, hex.
    pub fn id(&self) -> String {
        sha256_hex(&self.0)[..16].to_string()
    }
}

//! `weft bundle`: build, sign and verify filter bundles, and make signing
//! keys. Exit status 0 on success, 1 when the input is refused.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use weft_bundle::{Bundle, PublicKey, SigningKey};

#[derive(Subcommand)]
pub(crate) enum BundleCommand {
    /// Make an ed25519 key pair: NAME.key (private; keep it secret) and
    /// NAME.pub (give it to proxies as a trusted key).
    Keygen {
        /// Path prefix of the two files.
        name: PathBuf,
    },
    /// Build a bundle archive from DIR/bundle.yaml and the modules it names.
    Build {
        /// The directory with bundle.yaml.
        dir: PathBuf,
        /// The archive to write; default NAME-VERSION.bundle.tar.gz here.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Sign it with this private key file.
        #[arg(long)]
        sign: Option<PathBuf>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign a bundle archive (in place, unless --out).
    Sign {
        /// The archive.
        bundle: PathBuf,
        /// The private key file (from `weft bundle keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signed archive; default: over the input.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Check a bundle archive: every module's hash, and with --trusted-key
    /// its signature. Prints what it holds.
    Verify {
        /// The archive.
        bundle: PathBuf,
        /// A trusted public key: a NAME.pub file or its base64 text. With
        /// any, the bundle must be signed by one of them.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Remote(crate::control::RemoteCommand),
}

pub(crate) fn run(command: BundleCommand) -> ExitCode {
    let result = match command {
        BundleCommand::Keygen { name } => keygen(&name),
        BundleCommand::Build {
            dir,
            out,
            sign,
            json,
        } => build(&dir, out, sign.as_deref(), json),
        BundleCommand::Sign { bundle, key, out } => sign(&bundle, &key, out),
        BundleCommand::Verify {
            bundle,
            trusted_keys,
            json,
        } => verify(&bundle, &trusted_keys, json),
        BundleCommand::Remote(command) => return crate::control::remote(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(name: &Path) -> Result<(), String> {
    let (key, stored) = SigningKey::generate().map_err(|e| e.to_string())?;
    let private = name.with_extension("key");
    let public = name.with_extension("pub");
    write_private(&private, &stored)?;
    write(
        &public,
        format!("{}\n", key.public_key().encode()).as_bytes(),
    )?;
    println!(
        "key {}: private {}, public {}",
        key.public_key().id(),
        private.display(),
        public.display()
    );
    Ok(())
}

fn build(dir: &Path, out: Option<PathBuf>, key: Option<&Path>, json: bool) -> Result<(), String> {
    let mut bundle = Bundle::from_dir(dir).map_err(|e| e.to_string())?;
    if let Some(key) = key {
        bundle.sign(&read_key(key)?);
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}-{}.bundle.tar.gz",
            bundle.manifest.name, bundle.manifest.version
        ))
    });
    write(&out, &bundle.to_archive().map_err(|e| e.to_string())?)?;
    report(&bundle, &out, None, json);
    Ok(())
}

fn sign(path: &Path, key: &Path, out: Option<PathBuf>) -> Result<(), String> {
    let mut bundle = open(path)?;
    let key = read_key(key)?;
    bundle.sign(&key);
    let out = out.unwrap_or_else(|| path.to_path_buf());
    write(&out, &bundle.to_archive().map_err(|e| e.to_string())?)?;
    println!(
        "{}: {} {} signed by key {}",
        out.display(),
        bundle.manifest.name,
        bundle.manifest.version,
        key.public_key().id()
    );
    Ok(())
}

fn verify(path: &Path, trusted: &[String], json: bool) -> Result<(), String> {
    let bundle = open(path)?;
    let keys = trusted
        .iter()
        .map(|k| read_public_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let signer = if keys.is_empty() {
        None
    } else {
        Some(
            bundle
                .verify(&keys)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        )
    };
    report(&bundle, path, signer, json);
    Ok(())
}

/// What a bundle holds, as text or JSON.
fn report(bundle: &Bundle, path: &Path, signer: Option<PublicKey>, json: bool) {
    let m = &bundle.manifest;
    let plugins: Vec<serde_json::Value> = m
        .plugins
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "module": p.module.display().to_string(),
                "bytes": bundle.module(p).map_or(0, <[u8]>::len),
            })
        })
        .collect();
    let listeners: Vec<serde_json::Value> = m
        .listeners
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name,
                "filters": l.filters,
                "virtual_hosts": l.virtual_hosts.as_ref().map(|v| v.iter().map(|h| h.name.clone()).collect::<Vec<_>>()),
            })
        })
        .collect();
    if json {
        let summary = serde_json::json!({
            "file": path.display().to_string(),
            "name": m.name,
            "version": m.version,
            "digest": bundle.digest(),
            "labels": m.labels,
            "plugins": plugins,
            "listeners": listeners,
            "signed_by": bundle.signature.as_ref().and_then(|s| PublicKey::parse(&s.key).ok()).map(|k| k.id()),
            "verified": signer.is_some(),
        });
        println!("{summary:#}");
        return;
    }
    println!(
        "{}: {} {} ({})",
        path.display(),
        m.name,
        m.version,
        bundle.digest()
    );
    if !m.labels.is_empty() {
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  for proxies labelled {}", labels.join(", "));
    }
    for p in &m.plugins {
        println!(
            "  plugin {}: {} ({} bytes)",
            p.name,
            p.module.display(),
            bundle.module(p).map_or(0, <[u8]>::len)
        );
    }
    for l in &m.listeners {
        let mut sets = Vec::new();
        if let Some(filters) = &l.filters {
            sets.push(format!("filters [{}]", filters.join(", ")));
        }
        if let Some(hosts) = &l.virtual_hosts {
            let routes: usize = hosts.iter().map(|h| h.routes.len()).sum();
            sets.push(format!(
                "{} virtual host(s), {routes} route(s)",
                hosts.len()
            ));
        }
        println!("  listener {}: {}", l.name, sets.join("; "));
    }
    match (&bundle.signature, signer) {
        (_, Some(key)) => println!("  signature: good, by trusted key {}", key.id()),
        (Some(signature), None) => println!(
            "  signature: by key {} (not checked: give --trusted-key)",
            PublicKey::parse(&signature.key).map_or_else(|_| "?".into(), |k| k.id())
        ),
        (None, None) => println!("  signature: none"),
    }
}

fn open(path: &Path) -> Result<Bundle, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Bundle::from_archive(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    SigningKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A public key given as a file or as its base64 text.
pub(crate) fn read_public_key(given: &str) -> Result<PublicKey, String> {
    PublicKey::read(given).map_err(|e| e.to_string())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a secret (a key, a token) to a new file readable by its owner
/// only.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

//! A local bundle source: a bundle archive, or a directory with
//! `bundle.yaml` and its modules (built in memory), applied when the proxy
//! starts and, with `watch`, whenever it changes.

use std::path::{Path, PathBuf};

use weft_bundle::{Bundle, BundleError, PublicKey};

use crate::Swapper;

/// Where bundles come from and whom they must be signed by.
pub(crate) struct Source {
    pub(crate) path: Option<PathBuf>,
    pub(crate) watch: bool,
    pub(crate) trusted: Vec<PublicKey>,
}

/// A bundle source that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("bundles.{field}: {problem}")]
pub struct KeyError {
    /// Which field.
    pub field: String,
    /// Why.
    pub problem: String,
}

impl Source {
    /// The source `config` describes; its trusted keys are given as base64
    /// or as `.pub` files.
    pub(crate) fn new(config: &weft_config::BundleSource) -> Result<Source, KeyError> {
        let trusted = config
            .trusted_keys
            .iter()
            .enumerate()
            .map(|(index, given)| {
                let fail = |problem: String| KeyError {
                    field: format!("trusted_keys[{index}]"),
                    problem,
                };
                PublicKey::read(given).map_err(|e| fail(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Source {
            path: config.path.clone(),
            watch: config.watch,
            trusted,
        })
    }

    /// Reads the bundle and applies it; a refusal is logged, counted and
    /// shown on `/bundle`, and the running version stays.
    pub(crate) fn apply(&self, swapper: &Swapper) {
        let Some(path) = &self.path else { return };
        match read(path) {
            Ok(bundle) => {
                let _ = swapper.apply_bundle(&bundle, &self.trusted);
            }
            Err(err) => swapper.refuse_bundle(&err.to_string()),
        }
    }
}

/// The bundle at `path`: an archive, or a directory to build.
pub(crate) fn read(path: &Path) -> Result<Bundle, BundleError> {
    if path.is_dir() {
        return Bundle::from_dir(path);
    }
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > weft_bundle::MAX_ARCHIVE_BYTES {
        return Err(BundleError::TooLarge {
            what: path.display().to_string(),
            limit: weft_bundle::MAX_ARCHIVE_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    Bundle::from_archive(&bytes).map_err(|err| match err {
        BundleError::Corrupt(problem) => {
            BundleError::Corrupt(format!("{}: {problem}", path.display()))
        }
        other => other,
    })
}

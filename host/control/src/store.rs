//! The control endpoint's store, on local disk: bundle archives by digest
//! (`bundles/<hex>.tar.gz`), the state (`state.json`: bundles, promotions,
//! proxies) and the append-only audit history (`audit.jsonl`).
//!
//! Every write survives a `kill -9` at any point: files are written aside,
//! flushed to disk (`fsync`) and renamed into place, then the directory is
//! flushed; the history is appended and flushed line by line, and a torn
//! last line (a crash mid-append) is skipped when read. A bundle's archive
//! is on disk before the state names it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{AuditEntry, BundleRecord, Desired, Labels, Promotion, ProxyRecord, Stage};

/// What the store keeps in `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Every bundle pushed, oldest first.
    pub bundles: Vec<BundleRecord>,
    /// Every promotion and rollback, oldest first.
    pub promotions: Vec<Promotion>,
    /// Every proxy that reported, by id.
    pub proxies: std::collections::BTreeMap<String, ProxyRecord>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// `state.json` is not what this version wrote.
    #[error("{}: {problem}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The store: its directory and the state in memory.
pub struct Store {
    dir: PathBuf,
    /// The state as on disk.
    pub state: State,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir.join("bundles")).map_err(io(dir))?;
        // Files a crash left half-written are never renamed into place.
        for folder in [dir.to_path_buf(), dir.join("bundles")] {
            for entry in std::fs::read_dir(&folder).map_err(io(&folder))?.flatten() {
                if entry.path().extension().is_some_and(|e| e == "tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                problem: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            state,
        })
    }

    /// Writes the state.
    pub fn save(&self) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| StoreError::Corrupt {
            path: self.dir.join("state.json"),
            problem: e.to_string(),
        })?;
        write_atomic(&self.dir.join("state.json"), &bytes)
    }

    fn bundle_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.dir.join("bundles").join(format!("{hex}.tar.gz")))
    }

    /// Stores a bundle archive under its digest.
    pub fn put_bundle(&self, digest: &str, archive: &[u8]) -> Result<(), StoreError> {
        let path = self
            .bundle_path(digest)
            .ok_or_else(|| StoreError::Corrupt {
                path: self.dir.join("bundles"),
                problem: format!("`{digest}` is not a sha256 digest"),
            })?;
        write_atomic(&path, archive)
    }

    /// A stored bundle archive.
    pub fn get_bundle(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(path) = self.bundle_path(digest) else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Appends to the audit history.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let path = self.dir.join("audit.jsonl");
        let mut line = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all(&line).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))
    }

    /// The audit history, oldest first.
    pub fn history(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let path = self.dir.join("audit.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        // A line torn by a crash mid-append does not parse: it is skipped.
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// The bundle `name` at `version`.
    pub fn find(&self, name: &str, version: &str) -> Option<&BundleRecord> {
        self.state
            .bundles
            .iter()
            .find(|b| b.name == name && b.version == version)
    }

    /// What proxy `id` with `labels` should run: the newest promotion
    /// whose selector its labels satisfy — passing over a staged one it is
    /// not a canary of, and a failed one.
    pub fn desired(&self, id: &str, labels: &Labels) -> Option<Desired> {
        self.state
            .promotions
            .iter()
            .rev()
            .filter(|p| selects(&p.selector, labels))
            .find(|p| match p.stage {
                Stage::Complete => true,
                Stage::Failed => false,
                Stage::Canary => p
                    .canaries
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c == id)),
            })
            .map(|p| Desired {
                digest: p.digest.clone(),
                name: p.name.clone(),
                version: p.version.clone(),
            })
    }
}

/// Whether `labels` include every label of `selector`.
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Writes `path` so that it holds either its old content or `bytes`, even
/// across a crash: write aside, flush, rename, flush the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let aside = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&aside).map_err(io(&aside))?;
        file.write_all(bytes).map_err(io(&aside))?;
        file.sync_all().map_err(io(&aside))?;
    }
    std::fs::rename(&aside, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: "2026-11-25T00:00:00.000Z".into(),
            who: "ci".into(),
            action: action.into(),
            detail: serde_json::Value::Null,
        }
    }

    #[test]
    fn what_a_crash_leaves_behind_is_cleaned_up_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.audit(&entry("push")).unwrap();
        store.save().unwrap();
        // A crash mid-append leaves a torn line; mid-write, a .tmp file.
        let audit = dir.path().join("audit.jsonl");
        let mut torn = std::fs::read(&audit).unwrap();
        torn.extend_from_slice(br#"{"at":"2026-11-25T00:00"#);
        std::fs::write(&audit, torn).unwrap();
        std::fs::write(dir.path().join("state.tmp"), b"half").unwrap();

        let store = Store::open(dir.path()).unwrap();
        assert!(!dir.path().join("state.tmp").exists());
        assert_eq!(store.history().unwrap(), vec![entry("push")]);
    }

    #[test]
    fn a_damaged_state_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn staged_promotions_reach_their_canaries_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let labels: Labels = [("env".to_string(), "prod".to_string())].into();
        let promotion =
            |id: u64, digest: &str, stage: Stage, canaries: Option<Vec<String>>| Promotion {
                id,
                kind: "promote".into(),
                name: "demo".into(),
                version: id.to_string(),
                digest: digest.into(),
                selector: labels.clone(),
                canaries,
                stage,
                by: "ci".into(),
                at: String::new(),
            };
        store
            .state
            .promotions
            .push(promotion(1, "sha256:a", Stage::Complete, None));
        store.state.promotions.push(promotion(
            2,
            "sha256:b",
            Stage::Canary,
            Some(vec!["p0".into()]),
        ));
        let digest = |id: &str, labels: &Labels| store.desired(id, labels).map(|d| d.digest);
        assert_eq!(digest("p0", &labels).as_deref(), Some("sha256:b"));
        assert_eq!(digest("p1", &labels).as_deref(), Some("sha256:a"));
        assert_eq!(digest("p1", &Labels::new()), None, "not selected");
        store.state.promotions[1].stage = Stage::Failed;
        assert_eq!(
            store.desired("p0", &labels).map(|d| d.digest).as_deref(),
            Some("sha256:a")
        );
        store.state.promotions[1].stage = Stage::Complete;
        assert_eq!(
            store.desired("p1", &labels).map(|d| d.digest).as_deref(),
            Some("sha256:b")
        );
    }
}

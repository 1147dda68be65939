//! The authoring loop: plugins with `watch: true` are swapped when their
//! module file changes, and a watched bundle source is applied again when
//! it changes. One thread watches the directories involved (inotify
//! through `notify`); a burst of events (an editor's write, a compiler's
//! output, a rename into place) becomes one swap once things have been
//! quiet for `SETTLE`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::Swapper;
use crate::bundles::Source;

/// How long a watched file must be quiet before it is loaded.
const SETTLE: Duration = Duration::from_millis(100);

/// What a change leads to.
enum Target {
    /// Swap this plugin's module.
    Plugin(String),
    /// Apply the bundle source again.
    Bundle,
}

/// A watched path: a directory (canonical) and, for a file, its name.
struct Watched {
    target: Target,
    dir: PathBuf,
    file: Option<OsString>,
}

impl Watched {
    /// Watches file `path`.
    fn file(target: Target, path: &Path) -> std::io::Result<Watched> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Ok(Watched {
            target,
            dir: dir.canonicalize()?,
            file: path.file_name().map(OsString::from),
        })
    }

    fn matches(&self, path: &Path) -> bool {
        match &self.file {
            Some(file) => path.file_name() == Some(file) && path.parent() == Some(&self.dir),
            // Anything in the directory but editors' and tools' scratch
            // files (hidden, `*.tmp`, `*.swp`, `*~`), which come and go
            // before the real file is in place.
            None => {
                let scratch = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with('.')
                        || n.ends_with(".tmp")
                        || n.ends_with(".swp")
                        || n.ends_with('~')
                });
                path.parent() == Some(&self.dir) && !scratch
            }
        }
    }
}

/// Starts the watching thread if any plugin has `watch: true` or the
/// bundle source is watched; it stops when `shutdown` turns true.
pub(crate) fn start(
    swapper: Arc<Swapper>,
    bundle: Option<Source>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let mut watched = Vec::new();
    for plugin in swapper.configs().iter().filter(|p| p.watch) {
        watched.push(Watched::file(
            Target::Plugin(plugin.name.clone()),
            &plugin.module,
        )?);
    }
    let bundle = bundle.filter(|b| b.watch && b.path.is_some());
    if let Some(path) = bundle.as_ref().and_then(|b| b.path.as_ref()) {
        watched.push(if path.is_dir() {
            Watched {
                target: Target::Bundle,
                dir: path.canonicalize()?,
                file: None,
            }
        } else {
            Watched::file(Target::Bundle, path)?
        });
    }
    if watched.is_empty() {
        return Ok(None);
    }
    let (events, received) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
    .map_err(std::io::Error::other)?;
    for w in &watched {
        watcher
            .watch(&w.dir, RecursiveMode::NonRecursive)
            .map_err(std::io::Error::other)?;
        tracing::info!(dir = %w.dir.display(), "watching for changes");
    }
    let handle = std::thread::Builder::new()
        .name("weft-watch".into())
        .spawn(move || {
            // Held for as long as the thread runs.
            let _watcher = watcher;
            // Index in `watched` → when it last changed.
            let mut pending: HashMap<usize, Instant> = HashMap::new();
            while !*shutdown.borrow() {
                match received.recv_timeout(SETTLE / 2) {
                    Ok(Ok(event)) => {
                        let event: notify::Event = event;
                        if matches!(event.kind, EventKind::Access(_)) {
                            continue;
                        }
                        for path in &event.paths {
                            for (i, w) in watched.iter().enumerate() {
                                if w.matches(path) {
                                    pending.insert(i, Instant::now());
                                }
                            }
                        }
                    }
                    Ok(Err(err)) => tracing::warn!("watching for changes: {err}"),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let settled: Vec<usize> = pending
                    .iter()
                    .filter(|(_, at)| at.elapsed() >= SETTLE)
                    .map(|(i, _)| *i)
                    .collect();
                for i in settled {
                    pending.remove(&i);
                    // A refused version is logged and counted where it is
                    // refused.
                    match (&watched[i].target, &bundle) {
                        (Target::Plugin(plugin), _) => {
                            tracing::info!(plugin = %plugin, "module file changed; loading it");
                            let _ = swapper.swap(plugin, None);
                        }
                        (Target::Bundle, Some(source)) => {
                            tracing::info!("bundle source changed; loading it");
                            source.apply(&swapper);
                        }
                        (Target::Bundle, None) => {}
                    }
                }
            }
        })?;
    Ok(Some(handle))
}

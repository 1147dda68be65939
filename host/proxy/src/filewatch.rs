//! The authoring loop: plugins with `watch: true` are swapped when their
//! module file changes. One thread watches the modules' directories
//! (inotify through `notify`); a burst of events on one file (an editor's
//! write, a compiler's output, a rename into place) becomes one swap once
//! the file has been quiet for `SETTLE`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::Swapper;

/// How long a module file must be quiet before it is loaded.
const SETTLE: Duration = Duration::from_millis(100);

/// A watched module: the plugin, its directory (canonical) and file name.
struct Watched {
    plugin: String,
    dir: PathBuf,
    file: OsString,
}

/// Starts the watching thread if any plugin has `watch: true`; it stops
/// when `shutdown` turns true.
pub(crate) fn start(
    swapper: Arc<Swapper>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let mut watched = Vec::new();
    for plugin in swapper.configs().iter().filter(|p| p.watch) {
        let (Some(dir), Some(file)) = (plugin.module.parent(), plugin.module.file_name()) else {
            continue;
        };
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        watched.push(Watched {
            plugin: plugin.name.clone(),
            dir: dir.canonicalize()?,
            file: file.to_os_string(),
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
        tracing::info!(plugin = %w.plugin, dir = %w.dir.display(), "watching the module for changes");
    }
    let handle = std::thread::Builder::new()
        .name("weft-watch".into())
        .spawn(move || {
            // Held for as long as the thread runs.
            let _watcher = watcher;
            // Plugin index in `watched` → when its file last changed.
            let mut pending: HashMap<usize, Instant> = HashMap::new();
            while !*shutdown.borrow() {
                match received.recv_timeout(SETTLE / 2) {
                    Ok(Ok(event)) => {
                        let event: notify::Event = event;
                        if matches!(event.kind, EventKind::Access(_)) {
                            continue;
                        }
                        for path in &event.paths {
                            let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
                                continue;
                            };
                            for (i, w) in watched.iter().enumerate() {
                                if w.file == file && w.dir == dir {
                                    pending.insert(i, Instant::now());
                                }
                            }
                        }
                    }
                    Ok(Err(err)) => tracing::warn!("watching module files: {err}"),
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
                    let plugin = &watched[i].plugin;
                    tracing::info!(plugin = %plugin, "module file changed; loading it");
                    // A refused version is logged and counted by the swap.
                    let _ = swapper.swap(plugin, None);
                }
            }
        })?;
    Ok(Some(handle))
}

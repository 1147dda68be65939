//! The processes `cargo xtask bench` starts, and what it reads about them
//! from `/proc`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a target may take to answer after it was started (weft
/// compiles the five filters' modules first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Processes this run started, stopped when it ends however it ends; the
/// directory with their configurations and logs is removed after a run
/// that worked, and kept (and named) after one that failed.
pub(crate) struct Processes {
    started: Vec<Started>,
    dir: PathBuf,
    pub(crate) keep: bool,
}

struct Started {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Processes {
    /// No process yet; `dir` holds their configurations and logs.
    pub(crate) fn new(dir: PathBuf) -> Processes {
        Processes {
            started: Vec::new(),
            dir,
            keep: true,
        }
    }

    /// Starts `command` with its output in `DIR/NAME.log`; returns its index.
    pub(crate) fn spawn(&mut self, name: &str, mut command: Command) -> Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}: {command:?}"))?;
        self.started.push(Started {
            name: name.to_string(),
            child,
            log,
        });
        Ok(self.started.len() - 1)
    }

    /// Waits until the process answers `GET /` on `addr` with 200 (and
    /// `header`, when given).
    pub(crate) fn wait_answering(
        &mut self,
        index: usize,
        addr: SocketAddr,
        header: Option<&str>,
    ) -> Result<()> {
        let started = self.started.get_mut(index).context("no such process")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = started.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before answering on {addr}; {}:\n{}",
                    started.name,
                    started.log.display(),
                    tail(&started.log)
                );
            }
            let last = match get(addr) {
                Ok((200, head)) => {
                    if let Some(header) = header
                        && !head
                            .lines()
                            .any(|l| l.to_ascii_lowercase().starts_with(header))
                    {
                        bail!(
                            "{} answers on {addr} without `{header}`: its filters did not run\n{head}",
                            started.name
                        );
                    }
                    return Ok(());
                }
                Ok((status, head)) => format!("status {status}\n{head}"),
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer 200 on http://{addr}/ within {} s (last: {last}); {}:\n{}",
                    started.name,
                    START_TIMEOUT.as_secs(),
                    started.log.display(),
                    tail(&started.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `probe` works (a TLS or HTTP/2 request through another
    /// client), failing early if the process exits.
    pub(crate) fn wait_probe(
        &mut self,
        index: usize,
        what: &str,
        probe: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let started = self.started.get_mut(index).context("no such process")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = started.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before answering {what}; {}:\n{}",
                    started.name,
                    started.log.display(),
                    tail(&started.log)
                );
            }
            let last = match probe() {
                Ok(()) => return Ok(()),
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {what} within {} s (last: {last}); {}:\n{}",
                    started.name,
                    START_TIMEOUT.as_secs(),
                    started.log.display(),
                    tail(&started.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops process `index` (SIGTERM, SIGKILL after 5 s); fails unless it
    /// exited by itself with success.
    pub(crate) fn stop(&mut self, index: usize) -> Result<()> {
        let started = self.started.get_mut(index).context("no such process")?;
        match stop(started) {
            Some(status) if status.success() => Ok(()),
            Some(status) => bail!(
                "{} exited with {status} when stopped (log: {})",
                started.name,
                started.log.display()
            ),
            None => bail!(
                "{} did not exit within 5 s of SIGTERM and was killed (log: {})",
                started.name,
                started.log.display()
            ),
        }
    }

    /// The PIDs of process `index` and of all its descendants (nginx's
    /// master and worker).
    pub(crate) fn family(&self, index: usize) -> Vec<u32> {
        self.started
            .get(index)
            .map(|s| family(s.child.id()))
            .unwrap_or_default()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for started in self.started.iter_mut().rev() {
            let _ = stop(started);
        }
        if self.keep {
            println!("    configurations and logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGTERM to the process, SIGKILL after 5 s, then SIGKILL to any
/// descendant still there. The exit status, unless it had to be killed.
fn stop(started: &mut Started) -> Option<ExitStatus> {
    if let Ok(Some(status)) = started.child.try_wait() {
        return Some(status);
    }
    let pid = started.child.id();
    let family = family(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut exited = None;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = started.child.try_wait() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = started.child.kill();
    let _ = started.child.wait();
    for other in family.into_iter().filter(|&p| p != pid) {
        if Path::new(&format!("/proc/{other}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &other.to_string()])
                .status();
        }
    }
    exited
}

/// `root` and every process descending from it, from the parent PIDs in
/// `/proc/*/stat`.
fn family(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(pid).ok()?;
            Some((pid, fields.get(1)?.parse().ok()?))
        })
        .collect();
    let mut family = vec![root];
    let mut next = 0;
    while let Some(&parent) = family.get(next) {
        for &(pid, ppid) in &parents {
            if ppid == parent && !family.contains(&pid) {
                family.push(pid);
            }
        }
        next += 1;
    }
    family
}

/// The fields of `/proc/PID/stat` after the command name: state is 0,
/// ppid 1, utime 11, stime 12.
fn stat_fields(pid: u32) -> Result<Vec<String>> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let (_, rest) = text
        .rsplit_once(')')
        .with_context(|| format!("{path}: no `)` after the command name"))?;
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU time of processes, in clock ticks.
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuTicks {
    /// utime: in user space.
    pub(crate) user: u64,
    /// stime: in the kernel.
    pub(crate) system: u64,
}

/// The CPU time of `pids`, summed.
pub(crate) fn cpu_ticks(pids: &[u32]) -> Result<CpuTicks> {
    let mut ticks = CpuTicks::default();
    for &pid in pids {
        let fields = stat_fields(pid)?;
        let field = |index: usize, name: &str| {
            fields
                .get(index)
                .and_then(|f| f.parse::<u64>().ok())
                .with_context(|| format!("/proc/{pid}/stat: no {name}"))
        };
        ticks.user += field(11, "utime")?;
        ticks.system += field(12, "stime")?;
    }
    Ok(ticks)
}

/// The sum of `VmHWM` (peak resident set) of `pids`, in KiB.
pub(crate) fn peak_rss_kib(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for &pid in pids {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("{path}: no VmHWM line"))?;
    }
    Ok(total)
}

/// `GET /` on a fresh connection: the status and the response head.
fn get(addr: SocketAddr) -> Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{addr} answered without a status line: {head:?}"))?;
    Ok((status, head.replace("\r\n", "\n")))
}

/// The last lines of a log, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

//! The fixed-rate latency runs of `cargo xtask bench`: an open-loop load
//! generator for HTTP/1.1 on loopback, and percentiles.
//!
//! `connections` keep-alive connections, one thread each, send together
//! `rate` requests per second on a fixed schedule: connection `k` sends
//! its `i`-th request at `start + k / rate + i * connections / rate`. A
//! request's latency is measured from the time it was *scheduled* to the
//! end of its response, so a response that comes late also delays (and
//! counts against) the requests queued behind it on its connection: no
//! coordinated omission, as in wrk2. The threads sleep until just before
//! the scheduled time and yield for the rest, so the send is not late by
//! the timer slack.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long before the scheduled time a thread stops sleeping and yields.
const SPIN: Duration = Duration::from_micros(100);
/// A response slower than this fails the run.
const TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n";

/// One fixed-rate run: every request's latency (ns), unsorted.
pub(crate) struct FixedRate {
    pub(crate) latencies_ns: Vec<u64>,
}

/// Sends `rate` requests per second over `connections` connections to
/// `addr` for `duration`; fails on a connection error, a timeout or an
/// answer other than 200.
pub(crate) fn fixed_rate(
    addr: SocketAddr,
    rate: u32,
    connections: u32,
    duration: Duration,
) -> Result<FixedRate> {
    if rate == 0 || connections == 0 {
        bail!("a fixed-rate run needs a rate and connections");
    }
    let period = Duration::from_secs_f64(f64::from(connections) / f64::from(rate));
    let stagger = Duration::from_secs_f64(1.0 / f64::from(rate));
    let streams = (0..connections)
        .map(|_| {
            let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
                .with_context(|| format!("cannot connect to {addr}"))?;
            tcp.set_nodelay(true)?;
            tcp.set_read_timeout(Some(TIMEOUT))?;
            Ok(tcp)
        })
        .collect::<Result<Vec<_>>>()?;
    // Every connection is open before the schedule starts.
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let threads: Vec<_> = streams
        .into_iter()
        .zip(0u32..)
        .map(|(tcp, k)| {
            let first = start + stagger * k;
            std::thread::spawn(move || connection(tcp, first, period, end))
        })
        .collect();
    let mut latencies_ns = Vec::new();
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(mut list)) => latencies_ns.append(&mut list),
            Ok(Err(err)) => failure = Some(err),
            Err(_) => failure = Some(anyhow::anyhow!("a load thread panicked")),
        }
    }
    if let Some(err) = failure {
        return Err(err.context(format!("fixed-rate run against {addr}")));
    }
    Ok(FixedRate { latencies_ns })
}

/// One connection's schedule.
fn connection(tcp: TcpStream, first: Instant, period: Duration, end: Instant) -> Result<Vec<u64>> {
    let mut writer = tcp.try_clone()?;
    let mut reader = BufReader::new(tcp);
    let mut latencies = Vec::new();
    let mut scheduled = first;
    while scheduled < end {
        wait_until(scheduled);
        writer.write_all(REQUEST)?;
        let status = read_response(&mut reader)?;
        let latency = scheduled.elapsed();
        if status != 200 {
            bail!("answered {status}");
        }
        latencies.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        scheduled += period;
    }
    Ok(latencies)
}

fn wait_until(when: Instant) {
    loop {
        let now = Instant::now();
        if now >= when {
            return;
        }
        let left = when - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::thread::yield_now();
        }
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body); returns
/// its status.
fn read_response(reader: &mut impl BufRead) -> Result<u16> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        bail!("the connection was closed before a response");
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not a status line: {line:?}"))?;
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection was closed in a response head");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().context("bad content-length")?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    if !chunked {
        skip(reader, length)?;
        return Ok(status);
    }
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        // The chunk and its CRLF; the last chunk has no data, then the
        // (empty) trailers end with a CRLF.
        skip(reader, size)?;
        line.clear();
        reader.read_line(&mut line)?;
        if size == 0 {
            return Ok(status);
        }
    }
}

fn skip(reader: &mut impl Read, bytes: usize) -> Result<()> {
    let copied = std::io::copy(&mut reader.take(bytes as u64), &mut std::io::sink())?;
    if copied != bytes as u64 {
        bail!("the connection was closed in a response body");
    }
    Ok(())
}

/// The nearest-rank percentile `p` (0–100) of ascending `sorted`, or NaN.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Less a hair, so that 99.9% of 1000 is rank 999, not 1000 by rounding.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).map_or(f64::NAN, |&v| v as f64)
}

/// Pins this process (all its threads, and threads started later) to
/// `cpu` until dropped, then restores its affinity.
pub(crate) struct Pinned {
    pid: String,
    before: String,
}

impl Pinned {
    pub(crate) fn to(cpu: &str) -> Result<Pinned> {
        let pid = std::process::id().to_string();
        // `pid 123's current affinity list: 0,1`
        let before = crate::bench::output("taskset", &["-c", "-p", &pid])?
            .rsplit(':')
            .next()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .context("`taskset -c -p` printed no affinity list")?
            .to_string();
        quiet_taskset(&pid, cpu)?;
        Ok(Pinned { pid, before })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = quiet_taskset(&self.pid, &self.before);
    }
}

fn quiet_taskset(pid: &str, cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-c", "-p", cpus, pid])
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run taskset")?;
    if !status.success() {
        bail!("taskset -a -c -p {cpus} {pid} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read() -> Result<()> {
        let text = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
                    HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n\
                    2\r\nok\r\n0\r\n\r\n\
                    HTTP/1.1 200 OK\r\n\r\n";
        let mut reader = BufReader::new(text.as_bytes());
        assert_eq!(read_response(&mut reader)?, 200);
        assert_eq!(read_response(&mut reader)?, 503);
        assert_eq!(read_response(&mut reader)?, 200);
        assert!(read_response(&mut reader).is_err());
        Ok(())
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&values, 50.0), 500.0);
        assert_eq!(percentile(&values, 99.9), 999.0);
        assert_eq!(percentile(&values, 100.0), 1000.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn a_fixed_rate_run_keeps_its_schedule() -> Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut writer = tcp.try_clone()?;
                    let mut reader = BufReader::new(tcp);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line)? == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        if line == "\r\n" {
                            writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
                        }
                    }
                });
            }
        });
        let run = fixed_rate(addr, 400, 4, Duration::from_millis(500))?;
        // 400/s for 0.5 s, give or take the last slot of each connection.
        assert!(
            (196..=204).contains(&run.latencies_ns.len()),
            "{} requests",
            run.latencies_ns.len()
        );
        Ok(())
    }
}

//! The WASI subset real toolchains import (Rust's std for wasm32-wasip1, Go,
//! C with wasi-libc, AssemblyScript), under both module names. Output goes
//! to the host log; everything else a filter has no business doing answers
//! ENOSYS through the link-time stubs.

use wasmtime::{Caller, Linker};

use crate::abi::LogLevel;
use crate::hostcalls::{Registry, emit_log};
use crate::memory::{HostError, read_u32, slice, slice_mut, split, write_u32, write_u64};
use crate::vm::HostState;

/// The WASI module names weft serves.
pub(crate) const MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

/// `errno` values.
const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const NOTSUP: i32 = 58;
/// A file type: what the standard streams are.
const CHARACTER_DEVICE: u8 = 2;
/// Rights: read, write.
const FD_READ: u64 = 1 << 1;
const FD_WRITE: u64 = 1 << 6;
/// "Function not supported": what the link-time stubs answer.
pub(crate) const NOSYS: i32 = 52;

fn errno(result: Result<(), HostError>) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(SUCCESS),
        Err(HostError::Status(_)) => Ok(FAULT),
        Err(HostError::Trap(err)) => Err(err),
    }
}

pub(crate) fn define(
    reg: &mut Registry,
    l: &mut Linker<HostState>,
    m: &str,
) -> wasmtime::Result<()> {
    reg.define(
        l,
        m,
        "fd_write",
        |mut c: Caller<'_, HostState>, fd: i32, iovs: i32, n: i32, ret: i32| {
            if fd != 1 && fd != 2 {
                return Ok(BADF);
            }
            errno(fd_write(&mut c, fd, iovs, n, ret))
        },
    )?;
    reg.define(
        l,
        m,
        "clock_time_get",
        |mut c: Caller<'_, HostState>, id: i32, _precision: i64, ret: i32| {
            let now = match id {
                // Realtime.
                0 => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                // Monotonic, process and thread CPU time: a monotonic clock
                // measured from the VM's creation.
                1..=3 => c.data().created.elapsed().as_nanos() as u64,
                _ => return Ok(NOTSUP),
            };
            errno(
                split(&mut c)
                    .map_err(HostError::from)
                    .and_then(|(mem, _)| Ok(write_u64(mem, ret, now)?)),
            )
        },
    )?;
    reg.define(
        l,
        m,
        "random_get",
        |mut c: Caller<'_, HostState>, ptr: i32, len: i32| {
            let result = split(&mut c).map_err(HostError::from).and_then(|(mem, _)| {
                let buf = slice_mut(mem, ptr, len)?;
                getrandom::fill(buf).map_err(|_| crate::abi::Status::InternalFailure)?;
                Ok(())
            });
            errno(result)
        },
    )?;
    // No environment and no arguments: counts and sizes are zero.
    for name in ["environ_sizes_get", "args_sizes_get"] {
        reg.define(
            l,
            m,
            name,
            |mut c: Caller<'_, HostState>, count: i32, size: i32| {
                errno(split(&mut c).map_err(HostError::from).and_then(|(mem, _)| {
                    write_u32(mem, count, 0)?;
                    write_u32(mem, size, 0)?;
                    Ok(())
                }))
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        reg.define(l, m, name, |_: Caller<'_, HostState>, _: i32, _: i32| {
            SUCCESS
        })?;
    }
    reg.define(l, m, "sched_yield", |_: Caller<'_, HostState>| SUCCESS)?;
    // The standard streams exist (as character devices, which toolchains'
    // runtimes look at while they start: Go's os package does); there is
    // no other file, and no preopened directory.
    reg.define(
        l,
        m,
        "fd_fdstat_get",
        |mut c: Caller<'_, HostState>, fd: i32, ret: i32| {
            if !(0..=2).contains(&fd) {
                return Ok(BADF);
            }
            errno(split(&mut c).map_err(HostError::from).and_then(|(mem, _)| {
                let stat = slice_mut(mem, ret, 24)?;
                stat.fill(0);
                stat[0] = CHARACTER_DEVICE;
                let rights: u64 = if fd == 0 { FD_READ } else { FD_WRITE };
                stat[8..16].copy_from_slice(&rights.to_le_bytes());
                Ok(())
            }))
        },
    )?;
    reg.define(
        l,
        m,
        "fd_fdstat_set_flags",
        |_: Caller<'_, HostState>, fd: i32, _flags: i32| {
            if (0..=2).contains(&fd) { SUCCESS } else { BADF }
        },
    )?;
    reg.define(
        l,
        m,
        "fd_prestat_get",
        |_: Caller<'_, HostState>, _fd: i32, _ret: i32| BADF,
    )?;
    reg.define(
        l,
        m,
        "fd_prestat_dir_name",
        |_: Caller<'_, HostState>, _fd: i32, _path: i32, _len: i32| BADF,
    )?;
    reg.define(
        l,
        m,
        "proc_exit",
        |c: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!(
                "plugin `{}` called proc_exit({code})",
                c.data().plugin.name
            )))
        },
    )?;
    Ok(())
}

fn fd_write(
    c: &mut Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    n: i32,
    ret: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let iovs = slice(
        mem,
        iovs,
        n.checked_mul(8).ok_or(crate::abi::Status::BadArgument)?,
    )?;
    let mut text = Vec::new();
    for i in 0..n as usize {
        let ptr = read_u32(iovs, i * 8)? as i32;
        let len = read_u32(iovs, i * 8 + 4)? as i32;
        text.extend_from_slice(slice(mem, ptr, len)?);
    }
    let written = text.len() as u32;
    let message = String::from_utf8_lossy(&text);
    let message = message.trim_end_matches('\n');
    if !message.is_empty() {
        let level = if fd == 1 {
            LogLevel::Info
        } else {
            LogLevel::Error
        };
        emit_log(&state.plugin.name, level, message);
    }
    write_u32(mem, ret, written)?;
    Ok(())
}

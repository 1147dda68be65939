//! The `env.proxy_*` host functions, linked once per [`crate::Runtime`].
//!
//! Each function is registered through [`Registry::define`], which records
//! its name: a module importing a `proxy_*` function that is not registered
//! here still links, to a stub answering [`Status::Unimplemented`].

use std::collections::HashSet;
use std::time::Duration;

use wasmtime::{Caller, Engine, IntoFunc, Linker};

use crate::abi::{AbiVersion, BufferType, LogLevel, MapType, Status, StreamAction, StreamType};
use crate::callout::{GrpcCall, GrpcOutbound, GrpcStreamOpen, HttpCall, Pairs};
use crate::memory::{HostError, give, read_u32, slice, split, status, write_u32, write_u64};
use crate::shared::MetricKind;
use crate::stream::HttpStream;
use crate::stream::LocalResponse;
use crate::vm::{
    ContextId, HostState, OpenGrpcStream, ROOT_CONTEXT, Swapped, restore_effective_stream,
};
use crate::wasi;

/// The host functions weft links, by (module, name).
#[derive(Default)]
pub(crate) struct Registry {
    names: HashSet<(String, String)>,
}

impl Registry {
    pub(crate) fn contains(&self, module: &str, name: &str) -> bool {
        self.names.contains(&(module.to_string(), name.to_string()))
    }

    /// Links `func` as `module.name` and records it.
    pub(crate) fn define<Params, Args>(
        &mut self,
        linker: &mut Linker<HostState>,
        module: &str,
        name: &str,
        func: impl IntoFunc<HostState, Params, Args>,
    ) -> wasmtime::Result<()> {
        linker.func_wrap(module, name, func)?;
        self.names.insert((module.to_string(), name.to_string()));
        Ok(())
    }
}

/// Builds the linker with every host function weft serves.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<(Linker<HostState>, Registry)> {
    let mut linker = Linker::new(engine);
    let mut reg = Registry::default();
    let l = &mut linker;
    let env = "env";

    reg.define(
        l,
        env,
        "proxy_log",
        |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            status(log(&mut c, level, ptr, len))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_log_level",
        |mut c: Caller<'_, HostState>, ret: i32| status(get_log_level(&mut c, ret)),
    )?;
    reg.define(
        l,
        env,
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, HostState>, ret: i32| status(get_current_time(&mut c, ret)),
    )?;
    reg.define(
        l,
        env,
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, HostState>, period: i32| {
            let period = period as u32;
            c.data_mut().tick_period = (period > 0).then(|| Duration::from_millis(period.into()));
            Ok(Status::Ok as i32)
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, HostState>,
         buffer: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_len: i32| {
            status(get_buffer_bytes(
                &mut c, buffer, start, max, ret_ptr, ret_len,
            ))
        },
    )?;
    // ABI 0.1.0: the configuration of the current phase.
    reg.define(
        l,
        env,
        "proxy_get_configuration",
        |mut c: Caller<'_, HostState>, ret_ptr: i32, ret_len: i32| {
            let plugin = c.data().plugin.clone();
            let bytes = if c.data().starting {
                &plugin.vm_configuration
            } else {
                &plugin.configuration
            };
            status(give(&mut c, bytes.len(), ret_ptr, ret_len, |dst, _| {
                dst.copy_from_slice(bytes)
            }))
        },
    )?;
    // ABI 0.1.0: weft keeps no route cache, so there is nothing to clear.
    reg.define(
        l,
        env,
        "proxy_clear_route_cache",
        |_: Caller<'_, HostState>| {},
    )?;
    reg.define(
        l,
        env,
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, HostState>, buffer: i32, start: i32, size: i32, dp: i32, dl: i32| {
            status(set_buffer_bytes(&mut c, buffer, start, size, (dp, dl)))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_grpc_call",
        |mut c: Caller<'_, HostState>,
         cp: i32,
         cl: i32,
         sp: i32,
         sl: i32,
         mp: i32,
         ml: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         timeout: i32,
         ret: i32| {
            status(grpc_call(
                &mut c,
                [(cp, cl), (sp, sl), (mp, ml), (dp, dl), (bp, bl)],
                timeout,
                ret,
            ))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_status",
        |mut c: Caller<'_, HostState>, code_ptr: i32, msg_ptr: i32, msg_len: i32| {
            status(get_status(&mut c, code_ptr, msg_ptr, msg_len))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_grpc_stream",
        |mut c: Caller<'_, HostState>,
         cp: i32,
         cl: i32,
         sp: i32,
         sl: i32,
         mp: i32,
         ml: i32,
         dp: i32,
         dl: i32,
         ret: i32| {
            status(grpc_stream(
                &mut c,
                [(cp, cl), (sp, sl), (mp, ml), (dp, dl)],
                ret,
            ))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_grpc_send",
        |mut c: Caller<'_, HostState>, token: i32, mp: i32, ml: i32, end: i32| {
            status(grpc_send(&mut c, token as u32, (mp, ml), end != 0))
        },
    )?;
    for (name, cancel) in [("proxy_grpc_cancel", true), ("proxy_grpc_close", false)] {
        reg.define(
            l,
            env,
            name,
            move |mut c: Caller<'_, HostState>, token: i32| {
                status(grpc_end(c.data_mut(), token as u32, cancel))
            },
        )?;
    }
    reg.define(
        l,
        env,
        "proxy_http_call",
        |mut c: Caller<'_, HostState>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         ret: i32| {
            status(http_call(
                &mut c,
                [(up, ul), (hp, hl), (bp, bl), (tp, tl)],
                timeout,
                ret,
            ))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_set_effective_context",
        |mut c: Caller<'_, HostState>, context: i32| {
            status(set_effective_context(c.data_mut(), context as u32))
        },
    )?;
    reg.define(l, env, "proxy_done", |mut c: Caller<'_, HostState>| {
        status(done(c.data_mut()))
    })?;
    reg.define(
        l,
        env,
        "proxy_continue_stream",
        |mut c: Caller<'_, HostState>, stream: i32| {
            status(stream_action(c.data_mut(), stream, StreamAction::Continue))
        },
    )?;
    // ABI 0.1.0's forms of proxy_continue_stream; they return nothing.
    reg.define(
        l,
        env,
        "proxy_continue_request",
        |mut c: Caller<'_, HostState>| {
            let _ = stream_action(c.data_mut(), 0, StreamAction::Continue);
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_continue_response",
        |mut c: Caller<'_, HostState>| {
            let _ = stream_action(c.data_mut(), 1, StreamAction::Continue);
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_close_stream",
        |mut c: Caller<'_, HostState>, stream: i32| {
            status(stream_action(c.data_mut(), stream, StreamAction::Close))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_buffer_status",
        |mut c: Caller<'_, HostState>, buffer: i32, ret_len: i32, ret_flags: i32| {
            status(get_buffer_status(&mut c, buffer, ret_len, ret_flags))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_call_foreign_function",
        |mut c: Caller<'_, HostState>,
         np: i32,
         nl: i32,
         ap: i32,
         al: i32,
         ret_ptr: i32,
         ret_len: i32| {
            status(call_foreign_function(
                &mut c,
                (np, nl),
                (ap, al),
                ret_ptr,
                ret_len,
            ))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ret_ptr: i32, ret_len: i32| {
            status(get_header_map_pairs(&mut c, map, ret_ptr, ret_len))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ptr: i32, len: i32| {
            status(set_header_map_pairs(&mut c, map, ptr, len))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_header_map_size",
        |mut c: Caller<'_, HostState>, map: i32, ret: i32| {
            status(get_header_map_size(&mut c, map, ret))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kp: i32, kl: i32, ret_ptr: i32, ret_len: i32| {
            status(get_header_map_value(&mut c, map, kp, kl, ret_ptr, ret_len))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_add_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            status(modify_map(
                &mut c,
                map,
                kp,
                kl,
                Some((vp, vl)),
                MapEdit::Add,
            ))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            status(modify_map(
                &mut c,
                map,
                kp,
                kl,
                Some((vp, vl)),
                MapEdit::Replace,
            ))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, kp: i32, kl: i32| {
            status(modify_map(&mut c, map, kp, kl, None, MapEdit::Remove))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_send_local_response",
        |mut c: Caller<'_, HostState>,
         code: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32| {
            status(send_local_response(
                &mut c,
                code,
                (dp, dl),
                (bp, bl),
                (hp, hl),
                grpc,
            ))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_property",
        |mut c: Caller<'_, HostState>, pp: i32, pl: i32, ret_ptr: i32, ret_len: i32| {
            status(get_property(&mut c, pp, pl, ret_ptr, ret_len))
        },
    )?;

    reg.define(
        l,
        env,
        "proxy_set_property",
        |mut c: Caller<'_, HostState>, pp: i32, pl: i32, vp: i32, vl: i32| {
            status(set_property(&mut c, (pp, pl), (vp, vl)))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_shared_data",
        |mut c: Caller<'_, HostState>,
         kp: i32,
         kl: i32,
         ret_ptr: i32,
         ret_len: i32,
         ret_cas: i32| {
            status(get_shared_data(&mut c, (kp, kl), ret_ptr, ret_len, ret_cas))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_set_shared_data",
        |mut c: Caller<'_, HostState>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| {
            status(set_shared_data(&mut c, (kp, kl), (vp, vl), cas as u32))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_register_shared_queue",
        |mut c: Caller<'_, HostState>, np: i32, nl: i32, ret: i32| {
            status(register_queue(&mut c, (np, nl), ret))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_resolve_shared_queue",
        |mut c: Caller<'_, HostState>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| {
            status(resolve_queue(&mut c, (vp, vl), (np, nl), ret))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_enqueue_shared_queue",
        |mut c: Caller<'_, HostState>, id: i32, vp: i32, vl: i32| {
            status(enqueue(&mut c, id as u32, (vp, vl)))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, HostState>, id: i32, ret_ptr: i32, ret_len: i32| {
            status(dequeue(&mut c, id as u32, ret_ptr, ret_len))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_define_metric",
        |mut c: Caller<'_, HostState>, kind: i32, np: i32, nl: i32, ret: i32| {
            status(define_metric(&mut c, kind, (np, nl), ret))
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_increment_metric",
        |mut c: Caller<'_, HostState>, id: i32, offset: i64| {
            status(
                c.data_mut()
                    .metric(id as u32)
                    .and_then(|m| m.increment(offset))
                    .map_err(Into::into),
            )
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_record_metric",
        |mut c: Caller<'_, HostState>, id: i32, value: i64| {
            status(
                c.data_mut()
                    .metric(id as u32)
                    .and_then(|m| m.record(value as u64))
                    .map_err(Into::into),
            )
        },
    )?;
    reg.define(
        l,
        env,
        "proxy_get_metric",
        |mut c: Caller<'_, HostState>, id: i32, ret: i32| {
            status(get_metric(&mut c, id as u32, ret))
        },
    )?;

    for module in wasi::MODULES {
        wasi::define(&mut reg, l, module)?;
    }
    Ok((linker, reg))
}

fn log(c: &mut Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> Result<(), HostError> {
    let level = LogLevel::from_abi(level).ok_or(Status::BadArgument)?;
    let (mem, state) = split(c)?;
    let message = String::from_utf8_lossy(slice(mem, ptr, len)?);
    emit_log(&state.plugin.name, level, &message);
    Ok(())
}

/// Writes a guest's log line to the host log, tagged with the plugin.
pub(crate) fn emit_log(plugin: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(target: "weft::filter", plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "weft::filter", plugin, "{message}"),
        LogLevel::Info => tracing::info!(target: "weft::filter", plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "weft::filter", plugin, "{message}"),
        LogLevel::Error | LogLevel::Critical => {
            tracing::error!(target: "weft::filter", plugin, "{message}")
        }
    }
}

fn get_log_level(c: &mut Caller<'_, HostState>, ret: i32) -> Result<(), HostError> {
    // The guest is told the level the host log would keep, so that it does
    // not format lines that would be dropped.
    use tracing::level_filters::LevelFilter;
    let level = match LevelFilter::current() {
        LevelFilter::TRACE => LogLevel::Trace,
        LevelFilter::DEBUG => LogLevel::Debug,
        LevelFilter::INFO => LogLevel::Info,
        LevelFilter::WARN => LogLevel::Warn,
        _ => LogLevel::Error,
    };
    let (mem, _) = split(c)?;
    write_u32(mem, ret, level as u32)?;
    Ok(())
}

fn get_current_time(c: &mut Caller<'_, HostState>, ret: i32) -> Result<(), HostError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (mem, _) = split(c)?;
    write_u64(mem, ret, now)?;
    Ok(())
}

fn get_buffer_bytes(
    c: &mut Caller<'_, HostState>,
    buffer: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<(), HostError> {
    let buffer = BufferType::from_abi(buffer).ok_or(Status::BadArgument)?;
    let start = start as u32 as usize;
    let max = max as u32 as usize;
    let plugin = c.data().plugin.clone();
    let mut part = std::mem::take(&mut c.data_mut().scratch);
    part.clear();
    let copied = {
        let state = c.data();
        let bytes = match configuration_buffer(&plugin, buffer) {
            Some(bytes) => Ok(bytes),
            None => buffer_reader(state, buffer).buffer(buffer),
        };
        bytes.and_then(|bytes| {
            let end = start.saturating_add(max).min(bytes.len());
            let slice = bytes.get(start..end).ok_or(Status::BadArgument)?;
            part.extend_from_slice(slice);
            Ok(())
        })
    };
    let result = match copied {
        Ok(()) => give(c, part.len(), ret_ptr, ret_len, |dst, _| {
            dst.copy_from_slice(&part)
        }),
        Err(status) => Err(status.into()),
    };
    c.data_mut().scratch = part;
    result
}

fn set_buffer_bytes(
    c: &mut Caller<'_, HostState>,
    buffer: i32,
    start: i32,
    size: i32,
    data: (i32, i32),
) -> Result<(), HostError> {
    let buffer = BufferType::from_abi(buffer).ok_or(Status::BadArgument)?;
    let (mem, state) = split(c)?;
    if configuration_buffer(&state.plugin, buffer).is_some() {
        // Configuration is read-only.
        return Err(Status::BadArgument.into());
    }
    let data = slice(mem, data.0, data.1)?;
    state
        .stream
        .set_buffer(buffer, start as u32 as usize, size as u32 as usize, data)?;
    Ok(())
}

/// `proxy_continue_stream` / `proxy_close_stream`: recorded for the
/// effective context; the embedder acts on it after the callback.
fn stream_action(
    state: &mut HostState,
    stream: i32,
    action: fn(StreamType) -> StreamAction,
) -> Result<(), HostError> {
    let stream = StreamType::from_abi(stream).ok_or(Status::BadArgument)?;
    let context = state.effective_context;
    state.stream_actions.push((context, action(stream)));
    Ok(())
}

/// `proxy_http_call`: hands the call to the embedder's caller.
fn http_call(
    c: &mut Caller<'_, HostState>,
    [upstream, headers, body, trailers]: [(i32, i32); 4],
    timeout: i32,
    ret: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let caller = state.http_caller.clone().ok_or(Status::Unimplemented)?;
    let owned = |pairs: Vec<Pair<'_>>| -> Pairs {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    };
    let call = HttpCall {
        upstream: text(slice(mem, upstream.0, upstream.1)?)?.to_string(),
        headers: owned(parse_pairs(slice(mem, headers.0, headers.1)?)?),
        body: slice(mem, body.0, body.1)?.to_vec(),
        trailers: owned(parse_pairs(slice(mem, trailers.0, trailers.1)?)?),
        timeout: Duration::from_millis(u64::from(timeout as u32)),
    };
    // The spec: a call without these is refused before it is made.
    for pseudo in [&b":method"[..], b":path", b":authority"] {
        if !call
            .headers
            .iter()
            .any(|(k, v)| k == pseudo && !v.is_empty())
        {
            return Err(Status::BadArgument.into());
        }
    }
    let token = caller(call)?;
    write_u32(mem, ret, token)?;
    Ok(())
}

/// `proxy_get_status`: the status (and `grpc-message`) of the gRPC call,
/// or the HTTP status of the HTTP call, whose outcome is being delivered;
/// 0 and no message otherwise. Always OK: SDKs treat anything else as
/// fatal.
fn get_status(
    c: &mut Caller<'_, HostState>,
    code_ptr: i32,
    msg_ptr: i32,
    msg_len: i32,
) -> Result<(), HostError> {
    let (code, message) = c.data().grpc_status.clone().unwrap_or((0, None));
    {
        let (mem, _) = split(c)?;
        write_u32(mem, code_ptr, code)?;
    }
    match message {
        Some(message) => give(c, message.len(), msg_ptr, msg_len, |dst, _| {
            dst.copy_from_slice(message.as_bytes())
        }),
        None => {
            let (mem, _) = split(c)?;
            write_u32(mem, msg_ptr, 0)?;
            write_u32(mem, msg_len, 0)?;
            Ok(())
        }
    }
}

/// `proxy_grpc_call`: hands the unary call to the embedder's caller.
fn grpc_call(
    c: &mut Caller<'_, HostState>,
    [cluster, service, method, metadata, message]: [(i32, i32); 5],
    timeout: i32,
    ret: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let caller = state.grpc_caller.clone().ok_or(Status::Unimplemented)?;
    let call = GrpcCall {
        cluster: text(slice(mem, cluster.0, cluster.1)?)?.to_string(),
        service: text(slice(mem, service.0, service.1)?)?.to_string(),
        method: text(slice(mem, method.0, method.1)?)?.to_string(),
        metadata: parse_pairs(slice(mem, metadata.0, metadata.1)?)?
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect(),
        message: slice(mem, message.0, message.1)?.to_vec(),
        timeout: Duration::from_millis(u64::from(timeout as u32)),
    };
    let token = caller(call)?;
    state.grpc_pending.push(token);
    write_u32(mem, ret, token)?;
    Ok(())
}

/// `proxy_grpc_stream`: hands the stream to the embedder's streamer and
/// keeps its sender for `proxy_grpc_send`.
fn grpc_stream(
    c: &mut Caller<'_, HostState>,
    [cluster, service, method, metadata]: [(i32, i32); 4],
    ret: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let streamer = state.grpc_streamer.clone().ok_or(Status::Unimplemented)?;
    let open = GrpcStreamOpen {
        cluster: text(slice(mem, cluster.0, cluster.1)?)?.to_string(),
        service: text(slice(mem, service.0, service.1)?)?.to_string(),
        method: text(slice(mem, method.0, method.1)?)?.to_string(),
        metadata: parse_pairs(slice(mem, metadata.0, metadata.1)?)?
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect(),
    };
    // Checked before the stream opens, so a bad pointer opens nothing.
    write_u32(mem, ret, 0)?;
    let (token, sender) = streamer(open)?;
    state.grpc_streams.push(OpenGrpcStream {
        token,
        sender,
        local_closed: false,
    });
    write_u32(mem, ret, token)?;
    Ok(())
}

/// `proxy_grpc_send`: a message on an open stream; with `end_stream`, the
/// plugin's last. NOT_FOUND for an unknown stream, BAD_ARGUMENT for a
/// unary call's token or a stream the plugin already ended.
fn grpc_send(
    c: &mut Caller<'_, HostState>,
    token: u32,
    message: (i32, i32),
    end_stream: bool,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let message = slice(mem, message.0, message.1)?;
    let Some(stream) = state.grpc_streams.iter_mut().find(|s| s.token == token) else {
        let unary = state.grpc_pending.contains(&token);
        return Err(if unary {
            Status::BadArgument
        } else {
            Status::NotFound
        }
        .into());
    };
    if stream.local_closed {
        return Err(Status::BadArgument.into());
    }
    (stream.sender)(GrpcOutbound::Message(message.to_vec()))?;
    if end_stream {
        stream.local_closed = true;
        (stream.sender)(GrpcOutbound::Close)?;
    }
    Ok(())
}

/// `proxy_grpc_cancel` (`cancel`) / `proxy_grpc_close`. For a unary call
/// both mean: do not deliver its outcome. A stream is reset by cancel
/// (nothing more is delivered) and half-closed by close (the plugin sends
/// no more; answers still arrive). NOT_FOUND for a token that is not in
/// flight.
fn grpc_end(state: &mut HostState, token: u32, cancel: bool) -> Result<(), HostError> {
    if let Some(i) = state.grpc_pending.iter().position(|t| *t == token) {
        state.grpc_pending.swap_remove(i);
        state.cancelled_grpc.push(token);
        return Ok(());
    }
    let index = state
        .grpc_streams
        .iter()
        .position(|s| s.token == token)
        .ok_or(Status::NotFound)?;
    if cancel {
        let mut stream = state.grpc_streams.swap_remove(index);
        (stream.sender)(GrpcOutbound::Cancel)?;
    } else {
        let stream = &mut state.grpc_streams[index];
        if !stream.local_closed {
            stream.local_closed = true;
            (stream.sender)(GrpcOutbound::Close)?;
        }
    }
    Ok(())
}

/// `proxy_set_effective_context`: the root context, the running callback's
/// own context, or a paused context whose stream the embedder lent.
fn set_effective_context(state: &mut HostState, context: ContextId) -> Result<(), HostError> {
    restore_effective_stream(state);
    if context == ROOT_CONTEXT || context == state.current_context {
        state.effective_context = context;
        return Ok(());
    }
    let found = match state.lent.iter().position(|(lent, _)| *lent == context) {
        Some(index) => Swapped::Lent(index),
        None => state
            .deferred
            .iter()
            .position(|(deferred, _)| *deferred == context)
            .map(Swapped::Deferred)
            .ok_or(Status::BadArgument)?,
    };
    if state.exchange_stream(found) {
        state.swapped = Some(found);
        state.effective_context = context;
    }
    Ok(())
}

/// `proxy_done`: the effective context, which `proxy_on_done` kept open,
/// may be finished; NOT_FOUND if it was not waiting.
fn done(state: &mut HostState) -> Result<(), HostError> {
    let context = state.effective_context;
    let waiting = state.deferred.iter().any(|(c, _)| *c == context);
    if !waiting || state.done.contains(&context) {
        return Err(Status::NotFound.into());
    }
    state.done.push(context);
    Ok(())
}

/// The configuration buffers the runtime itself holds; `None` for the
/// others, which the stream holds.
fn configuration_buffer(plugin: &crate::vm::Plugin, buffer: BufferType) -> Option<&[u8]> {
    match buffer {
        BufferType::PluginConfiguration => Some(&plugin.configuration),
        BufferType::VmConfiguration => Some(&plugin.vm_configuration),
        _ => None,
    }
}

fn get_buffer_status(
    c: &mut Caller<'_, HostState>,
    buffer: i32,
    ret_len: i32,
    ret_flags: i32,
) -> Result<(), HostError> {
    let buffer = BufferType::from_abi(buffer).ok_or(Status::BadArgument)?;
    let (mem, state) = split(c)?;
    let len = match configuration_buffer(&state.plugin, buffer) {
        Some(bytes) => bytes.len(),
        None => buffer_reader(state, buffer).buffer(buffer)?.len(),
    };
    write_u32(mem, ret_len, len as u32)?;
    write_u32(mem, ret_flags, 0)?;
    Ok(())
}

fn call_foreign_function(
    c: &mut Caller<'_, HostState>,
    name: (i32, i32),
    args: (i32, i32),
    ret_ptr: i32,
    ret_len: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let function = state.shared.foreign(slice(mem, name.0, name.1)?)?;
    let result = function(slice(mem, args.0, args.1)?)?;
    give(c, result.len(), ret_ptr, ret_len, |dst, _| {
        dst.copy_from_slice(&result)
    })
}

/// Where a map is read from: an HTTP call's answer while
/// `proxy_on_http_call_response` runs, the stream otherwise.
fn reader(state: &HostState, map: MapType) -> &dyn HttpStream {
    match &state.answer {
        Some(answer) if answer.has_map(map) => answer,
        _ => &*state.stream,
    }
}

/// Where a buffer is read from (see [`reader`]).
fn buffer_reader(state: &HostState, buffer: BufferType) -> &dyn HttpStream {
    match &state.answer {
        Some(answer) if answer.has_buffer(buffer) => answer,
        _ => &*state.stream,
    }
}

fn map_type(map: i32) -> Result<MapType, Status> {
    MapType::from_abi(map).ok_or(Status::BadArgument)
}

fn get_header_map_pairs(
    c: &mut Caller<'_, HostState>,
    map: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<(), HostError> {
    let map = map_type(map)?;
    // First pass: the serialised size (count, lengths, then each key and
    // value NUL-terminated), so the guest allocates once.
    let (mut count, mut len) = (0usize, 4usize);
    reader(c.data(), map).visit_map(map, &mut |k, v| {
        count += 1;
        len += 8 + k.len() + 1 + v.len() + 1;
    })?;
    if count == 0 {
        // An empty map is an empty value (the spec's serialization).
        len = 0;
    }
    give(c, len, ret_ptr, ret_len, |dst, state| {
        // The map cannot change between the two passes: the guest is not
        // running while the host fills its memory.
        if dst.is_empty() {
            return;
        }
        dst[..4].copy_from_slice(&(count as u32).to_le_bytes());
        let mut sizes = 4;
        let mut data = 4 + count * 8;
        let _ = reader(state, map).visit_map(map, &mut |k, v| {
            dst[sizes..sizes + 4].copy_from_slice(&(k.len() as u32).to_le_bytes());
            dst[sizes + 4..sizes + 8].copy_from_slice(&(v.len() as u32).to_le_bytes());
            sizes += 8;
            for part in [k, v] {
                dst[data..data + part.len()].copy_from_slice(part);
                dst[data + part.len()] = 0;
                data += part.len() + 1;
            }
        });
    })
}

/// A header pair as the guest serialised it.
pub(crate) type Pair<'a> = (&'a [u8], &'a [u8]);

/// Parses the serialised pairs format: a u32 count, count (key length,
/// value length) u32 pairs, then each key and value followed by a NUL.
pub(crate) fn parse_pairs(bytes: &[u8]) -> Result<Vec<Pair<'_>>, Status> {
    // The spec's two forms of an empty map: nothing, or one NUL byte.
    if bytes.is_empty() || bytes == [0] {
        return Ok(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let header = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .ok_or(Status::ParseFailure)?;
    if header > bytes.len() {
        return Err(Status::ParseFailure);
    }
    let mut pairs = Vec::with_capacity(count);
    let mut data = header;
    for i in 0..count {
        let klen = read_u32(bytes, 4 + i * 8)? as usize;
        let vlen = read_u32(bytes, 8 + i * 8)? as usize;
        let key = bytes.get(data..data + klen).ok_or(Status::ParseFailure)?;
        data += klen + 1;
        let value = bytes.get(data..data + vlen).ok_or(Status::ParseFailure)?;
        data += vlen + 1;
        if data > bytes.len() {
            return Err(Status::ParseFailure);
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn set_header_map_pairs(
    c: &mut Caller<'_, HostState>,
    map: i32,
    ptr: i32,
    len: i32,
) -> Result<(), HostError> {
    let map = map_type(map)?;
    let (mem, state) = split(c)?;
    let pairs = parse_pairs(slice(mem, ptr, len)?)?;
    state.stream.set_map_pairs(map, &pairs)?;
    Ok(())
}

fn get_header_map_size(c: &mut Caller<'_, HostState>, map: i32, ret: i32) -> Result<(), HostError> {
    let map = map_type(map)?;
    let mut len = 4usize;
    reader(c.data(), map).visit_map(map, &mut |k, v| len += 8 + k.len() + 1 + v.len() + 1)?;
    let (mem, _) = split(c)?;
    write_u32(mem, ret, len as u32)?;
    Ok(())
}

fn get_header_map_value(
    c: &mut Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<(), HostError> {
    let map = map_type(map)?;
    let (mem, state) = split(c)?;
    let key = slice(mem, kp, kl)?;
    let mut scratch = std::mem::take(&mut state.scratch);
    scratch.clear();
    match reader(state, map).map_value(map, key)? {
        Some(value) => scratch.extend_from_slice(value),
        // ABI 0.1.0 answered OK with an empty value for a missing key.
        None if state.plugin.module.abi_version() == AbiVersion::V0_1_0 => {}
        None => {
            state.scratch = scratch;
            return Err(Status::NotFound.into());
        }
    }
    let result = give(c, scratch.len(), ret_ptr, ret_len, |dst, _| {
        dst.copy_from_slice(&scratch)
    });
    c.data_mut().scratch = scratch;
    result
}

enum MapEdit {
    Add,
    Replace,
    Remove,
}

fn modify_map(
    c: &mut Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
    value: Option<(i32, i32)>,
    edit: MapEdit,
) -> Result<(), HostError> {
    let map = map_type(map)?;
    let (mem, state) = split(c)?;
    let key = slice(mem, kp, kl)?;
    let value = match value {
        Some((vp, vl)) => slice(mem, vp, vl)?,
        None => &[],
    };
    match edit {
        MapEdit::Add => state.stream.add_map_value(map, key, value)?,
        MapEdit::Replace => state.stream.replace_map_value(map, key, value)?,
        MapEdit::Remove => state.stream.remove_map_value(map, key)?,
    }
    Ok(())
}

fn send_local_response(
    c: &mut Caller<'_, HostState>,
    code: i32,
    details: (i32, i32),
    body: (i32, i32),
    headers: (i32, i32),
    grpc_status: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let headers = parse_pairs(slice(mem, headers.0, headers.1)?)?
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    let response = LocalResponse {
        status: code as u32,
        details: slice(mem, details.0, details.1)?.to_vec(),
        body: slice(mem, body.0, body.1)?.to_vec(),
        headers,
        grpc_status,
    };
    state.stream.send_local_response(response)?;
    Ok(())
}

/// Splits a serialised property path into its segments. SDKs end every
/// segment with a NUL (Rust) or only separate them (Go); both are accepted.
fn property_path(path: &[u8]) -> Segments<'_> {
    let path = path.strip_suffix(&[0]).unwrap_or(path);
    let mut few = [&[][..]; FEW_SEGMENTS];
    let mut count = 0;
    for segment in path.split(|&b| b == 0) {
        if count == FEW_SEGMENTS {
            return Segments::Many(path.split(|&b| b == 0).collect());
        }
        few[count] = segment;
        count += 1;
    }
    Segments::Few(few, count)
}

/// Property paths have a few segments (`xds.route_name`): they are split
/// on the stack, not into a vector per read.
const FEW_SEGMENTS: usize = 6;

enum Segments<'a> {
    Few([&'a [u8]; FEW_SEGMENTS], usize),
    Many(Vec<&'a [u8]>),
}

impl<'a> std::ops::Deref for Segments<'a> {
    type Target = [&'a [u8]];

    fn deref(&self) -> &Self::Target {
        match self {
            Segments::Few(few, count) => &few[..*count],
            Segments::Many(many) => many,
        }
    }
}

fn get_property(
    c: &mut Caller<'_, HostState>,
    pp: i32,
    pl: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let path = property_path(slice(mem, pp, pl)?);
    let mut value = std::mem::take(&mut state.scratch);
    value.clear();
    let plugin = &state.plugin;
    let own = match &*path {
        [b"plugin_name"] => Some(&plugin.name),
        [b"plugin_root_id"] => Some(&plugin.root_id),
        [b"plugin_vm_id"] => Some(&plugin.vm_id),
        _ => None,
    };
    let found = match own {
        Some(text) => {
            value.extend_from_slice(text.as_bytes());
            Ok(())
        }
        None => state.stream.property(&path, &mut value),
    };
    let result = match found {
        Ok(()) => give(c, value.len(), ret_ptr, ret_len, |dst, _| {
            dst.copy_from_slice(&value)
        }),
        Err(status) => Err(status.into()),
    };
    c.data_mut().scratch = value;
    result
}

fn set_property(
    c: &mut Caller<'_, HostState>,
    path: (i32, i32),
    value: (i32, i32),
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let path = property_path(slice(mem, path.0, path.1)?);
    let value = slice(mem, value.0, value.1)?;
    state.stream.set_property(&path, value)?;
    Ok(())
}

fn get_shared_data(
    c: &mut Caller<'_, HostState>,
    key: (i32, i32),
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let key = slice(mem, key.0, key.1)?;
    let mut value = std::mem::take(&mut state.scratch);
    let cas = state.shared.get(&state.plugin.vm_id, key, &mut value);
    let result = cas.map_err(HostError::from).and_then(|cas| {
        give(c, value.len(), ret_ptr, ret_len, |dst, _| {
            dst.copy_from_slice(&value)
        })?;
        let (mem, _) = split(c)?;
        write_u32(mem, ret_cas, cas)?;
        Ok(())
    });
    c.data_mut().scratch = value;
    result
}

fn set_shared_data(
    c: &mut Caller<'_, HostState>,
    key: (i32, i32),
    value: (i32, i32),
    cas: u32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let key = slice(mem, key.0, key.1)?;
    let value = slice(mem, value.0, value.1)?;
    state.shared.set(&state.plugin.vm_id, key, value, cas)?;
    Ok(())
}

/// A name the guest passed, as UTF-8.
fn text(bytes: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(bytes).map_err(|_| Status::BadArgument)
}

fn register_queue(
    c: &mut Caller<'_, HostState>,
    name: (i32, i32),
    ret: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let name = text(slice(mem, name.0, name.1)?)?;
    let notifier = state.queue_notifier.clone();
    let id = state
        .shared
        .register_queue(&state.plugin.vm_id, name, notifier)?;
    write_u32(mem, ret, id)?;
    Ok(())
}

fn resolve_queue(
    c: &mut Caller<'_, HostState>,
    vm_id: (i32, i32),
    name: (i32, i32),
    ret: i32,
) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let vm_id = text(slice(mem, vm_id.0, vm_id.1)?)?;
    let name = text(slice(mem, name.0, name.1)?)?;
    let id = state.shared.resolve_queue(vm_id, name)?;
    write_u32(mem, ret, id)?;
    Ok(())
}

fn enqueue(c: &mut Caller<'_, HostState>, id: u32, value: (i32, i32)) -> Result<(), HostError> {
    let (mem, state) = split(c)?;
    let value = slice(mem, value.0, value.1)?;
    state.shared.enqueue(id, value)?;
    Ok(())
}

fn dequeue(
    c: &mut Caller<'_, HostState>,
    id: u32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<(), HostError> {
    let item = c.data().shared.dequeue(id)?;
    give(c, item.len(), ret_ptr, ret_len, |dst, _| {
        dst.copy_from_slice(&item)
    })
}

fn define_metric(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    name: (i32, i32),
    ret: i32,
) -> Result<(), HostError> {
    let kind = MetricKind::from_abi(kind).ok_or(Status::BadArgument)?;
    let (mem, state) = split(c)?;
    let name = text(slice(mem, name.0, name.1)?)?;
    let id = state.shared.define_metric(kind, name)?;
    write_u32(mem, ret, id)?;
    Ok(())
}

fn get_metric(c: &mut Caller<'_, HostState>, id: u32, ret: i32) -> Result<(), HostError> {
    let value = c.data_mut().metric(id)?.get()?;
    let (mem, _) = split(c)?;
    write_u64(mem, ret, value)?;
    Ok(())
}

/// ABI 0.1.0's `proxy_clear_route_cache`, `proxy_continue_request` and
/// `proxy_continue_response` return nothing in the spec, but Envoy's host
/// serves them returning a status, and SDKs (the published AssemblyScript
/// one) import them so. A module importing one with a status result gets
/// this form of it (answering OK), in its own linker.
pub(crate) fn define_status_form(l: &mut Linker<HostState>, name: &str) -> wasmtime::Result<bool> {
    match name {
        "proxy_clear_route_cache" => {
            l.func_wrap("env", name, |_: Caller<'_, HostState>| -> i32 { 0 })?;
        }
        "proxy_continue_request" => {
            l.func_wrap("env", name, |mut c: Caller<'_, HostState>| -> i32 {
                let _ = stream_action(c.data_mut(), 0, StreamAction::Continue);
                0
            })?;
        }
        "proxy_continue_response" => {
            l.func_wrap("env", name, |mut c: Caller<'_, HostState>| -> i32 {
                let _ = stream_action(c.data_mut(), 1, StreamAction::Continue);
                0
            })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialise(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn property_paths_split_with_or_without_a_final_nul_and_at_any_length() {
        fn split(path: &[u8]) -> Vec<&[u8]> {
            property_path(path).to_vec()
        }
        let route: Vec<&[u8]> = vec![b"xds", b"route_name"];
        assert_eq!(split(b"xds\0route_name"), route);
        assert_eq!(split(b"xds\0route_name\0"), route);
        assert_eq!(split(b"plugin_name"), vec![&b"plugin_name"[..]]);
        let long: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];
        assert_eq!(split(b"a\0b\0c\0d\0e\0f\0g\0h"), long);
        assert_eq!(split(&long.join(&0)[..]).len(), 8);
        assert_eq!(split(b"a\0b\0c\0d\0e\0f").len(), FEW_SEGMENTS);
    }

    #[test]
    fn pairs_round_trip() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"", b""), (b"key", b"value")];
        assert_eq!(parse_pairs(&serialise(&pairs)).unwrap(), pairs);
        assert_eq!(parse_pairs(&[]).unwrap(), vec![]);
    }

    #[test]
    fn truncated_pairs_are_a_parse_failure() {
        let bytes = serialise(&[(b"key", b"value")]);
        for cut in 1..bytes.len() {
            assert_eq!(
                parse_pairs(&bytes[..cut]),
                Err(Status::ParseFailure),
                "cut at {cut}"
            );
        }
        // A count that would overflow the header size.
        assert_eq!(
            parse_pairs(&u32::MAX.to_le_bytes()),
            Err(Status::ParseFailure)
        );
    }
}

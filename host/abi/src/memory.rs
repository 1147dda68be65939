//! Safe access to a guest's linear memory. Every pointer and length a guest
//! passes is checked here; a bad one becomes a status, never a panic.

use wasmtime::Caller;

use crate::abi::Status;
use crate::vm::HostState;

/// What a host function ends with: a status for the guest, or a trap (a
/// guest function the host called back into trapped).
pub(crate) enum HostError {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for HostError {
    fn from(status: Status) -> Self {
        HostError::Status(status)
    }
}

/// Turns a host function's outcome into what wasmtime expects.
pub(crate) fn status(result: Result<(), HostError>) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok as i32),
        Err(HostError::Status(status)) => Ok(status as i32),
        Err(HostError::Trap(err)) => Err(err),
    }
}

/// The guest's memory and the host state, borrowed together.
pub(crate) fn split<'a>(
    caller: &'a mut Caller<'_, HostState>,
) -> Result<(&'a mut [u8], &'a mut HostState), Status> {
    let memory = caller.data().memory.ok_or(Status::InternalFailure)?;
    Ok(memory.data_and_store_mut(caller))
}

fn range(ptr: i32, len: i32, memory_len: usize) -> Result<std::ops::Range<usize>, Status> {
    // Pointers and sizes are unsigned 32-bit values in wasm32.
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as u32 as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    if end > memory_len {
        return Err(Status::InvalidMemoryAccess);
    }
    Ok(start..end)
}

/// The `len` bytes at `ptr`.
pub(crate) fn slice(memory: &[u8], ptr: i32, len: i32) -> Result<&[u8], Status> {
    Ok(&memory[range(ptr, len, memory.len())?])
}

/// The `len` bytes at `ptr`, writable.
pub(crate) fn slice_mut(memory: &mut [u8], ptr: i32, len: i32) -> Result<&mut [u8], Status> {
    let r = range(ptr, len, memory.len())?;
    Ok(&mut memory[r])
}

/// Writes a little-endian u32 at `ptr`.
pub(crate) fn write_u32(memory: &mut [u8], ptr: i32, value: u32) -> Result<(), Status> {
    slice_mut(memory, ptr, 4)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// Writes a little-endian u64 at `ptr`.
pub(crate) fn write_u64(memory: &mut [u8], ptr: i32, value: u64) -> Result<(), Status> {
    slice_mut(memory, ptr, 8)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// Reads a little-endian u32 at byte `offset` of `bytes`.
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> Result<u32, Status> {
    let b = bytes.get(offset..offset + 4).ok_or(Status::ParseFailure)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Hands `len` bytes to the guest: allocates them with the guest's allocator
/// (`proxy_on_memory_allocate`, or `malloc`), lets `fill` write them, and
/// stores the address and length at `ret_ptr` / `ret_len`.
///
/// `fill` gets the host state too, so the bytes can be produced straight
/// into guest memory without a copy on the host side.
pub(crate) fn give(
    caller: &mut Caller<'_, HostState>,
    len: usize,
    ret_ptr: i32,
    ret_len: i32,
    fill: impl FnOnce(&mut [u8], &mut HostState),
) -> Result<(), HostError> {
    let len32 = u32::try_from(len).map_err(|_| Status::BadArgument)?;
    let allocator = caller
        .data()
        .allocator
        .clone()
        .ok_or(Status::InternalFailure)?;
    let addr = allocator
        .call(&mut *caller, len32 as i32)
        .map_err(HostError::Trap)?;
    let (memory, state) = split(caller)?;
    if addr == 0 && len > 0 {
        // The guest's allocator failed (returned NULL).
        return Err(Status::InternalFailure.into());
    }
    // A hostile or broken allocator may return any address: it is checked
    // like every other guest pointer.
    fill(slice_mut(memory, addr, len32 as i32)?, state);
    write_u32(memory, ret_ptr, addr as u32)?;
    write_u32(memory, ret_len, len32)?;
    Ok(())
}

//! Which names `files` serves, and opening them without blocking the
//! reactor: a requested name is resolved inside `--root` (no `..`, no
//! absolute path, no symlink leading out), checked to be a regular file,
//! and opened so that neither a FIFO nor another process's lease can stall
//! the loop. Every refusal is a [`Refusal`], whose text the client gets.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Why a name was not served; the text goes into the `error` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    NotAllowed,
    NotAFile,
    /// Opening would have to wait for another process to give up a lease.
    Busy,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotFound => "not found",
            Refusal::NotAllowed => "not allowed",
            Refusal::NotAFile => "not a file",
            Refusal::Busy => "busy",
        }
    }
}

/// Resolves a requested name to a canonical path inside `root` (itself
/// canonical). Refuses empty names, NUL, absolute paths and `..` before
/// touching the disk, then symlinks whose target leaves the root.
pub fn resolve(root: &Path, name: &[u8]) -> Result<PathBuf, Refusal> {
    if name.is_empty() || name.contains(&0) {
        return Err(Refusal::NotAllowed);
    }
    let rel = Path::new(std::ffi::OsStr::from_bytes(name));
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Refusal::NotAllowed); // `..`, `/...`
    }
    let canonical = root.join(rel).canonicalize().map_err(refusal)?;
    if !canonical.starts_with(root) {
        return Err(Refusal::NotAllowed); // a symlink led outside
    }
    Ok(canonical)
}

/// Opens a resolved name for reading and returns it with its size.
pub fn open(root: &Path, name: &[u8]) -> Result<(File, u64), Refusal> {
    let path = resolve(root, name)?;
    // Check before opening: opening a device or FIFO can block or have
    // side effects.
    if !std::fs::metadata(&path).map_err(refusal)?.is_file() {
        return Err(Refusal::NotAFile);
    }
    // O_NOFOLLOW: the path is canonical, so a symlink in its last component
    // was swapped in since `resolve` (a directory above it swapped for a
    // symlink is not caught: that needs openat2's RESOLVE_BENEATH, and an
    // attacker who can write inside --root). O_NONBLOCK: a FIFO swapped in
    // cannot block us, and neither can a file another process holds a lease
    // on (fcntl F_SETLEASE): a blocking open would wait up to
    // lease-break-time (45 s) for the holder, stalling every connection;
    // non-blocking, it fails at once with EWOULDBLOCK, answered "busy".
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(refusal)?;
    let meta = file.metadata().map_err(refusal)?;
    if !meta.is_file() {
        return Err(Refusal::NotAFile);
    }
    Ok((file, meta.len()))
}

fn refusal(e: io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Refusal::NotAllowed,
        io::ErrorKind::WouldBlock => Refusal::Busy,
        _ if e.raw_os_error() == Some(libc::ELOOP) => Refusal::NotAllowed,
        _ => Refusal::NotFound,
    }
}

//! `files`: downloads each NAME. Per request the server answers with a `u32`
//! big-endian header length, a JSON header (`{"name":..,"size":N}` or
//! `{"error":".."}`) and then exactly N bytes of file (`src/protocol/
//! files.rs`). Requests go one after another on one connection.
//!
//! What the tutorials get wrong:
//!
//! - `header = s.recv(1024)`: one read may hold half the header, or the
//!   header and the start of the body, which then never reaches the file.
//!   Here the header length is read in full, then exactly that much JSON,
//!   then exactly `size` body bytes, never one more (the next reply starts
//!   right after).
//! - `while data := s.recv(4096): f.write(data)`: a connection that ends
//!   early leaves a short file that looks like a finished download. Here the
//!   body goes to a hidden `.NAME.part-PID` file, which is renamed to NAME
//!   only once all `size` bytes are in it, and removed otherwise.
//! - `open(header["name"], "wb")`: the server picks the path we write, and
//!   `../../.bashrc` is a valid name. Here the file is saved under the last
//!   component of the name *we* asked for, inside `--output-dir`, and a
//!   header naming another file is a protocol error.
//! - Trusting the header length: it is bounded before anything is allocated.
//! - Holding the whole file in memory: the body is copied in 64 KiB pieces.
//!
//! An `{"error":..}` answer (not found, not allowed, ...) leaves the
//! connection usable: it is reported, the next NAME is tried, and the exit
//! status is 1. A connection that ends or stalls stops everything.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::failure::Failure;
use crate::tcp::{finish, read_full, read_some};

/// Longest JSON header accepted, beyond six bytes per byte of the name (the
/// worst case of JSON escaping): a header is the name and a few fields.
const MAX_HEADER_EXTRA: usize = 4096;

/// Body bytes read and written at a time.
const PIECE: usize = 64 * 1024;

/// A requested name and the file name it is saved as.
pub struct Wanted<'a> {
    name: &'a str,
    local: &'a OsStr,
}

/// Checks every name: each must be one request line, and have a last
/// component to save as (not `..` or `/`).
pub fn wanted(names: &[String]) -> Result<Vec<Wanted<'_>>, Failure> {
    names
        .iter()
        .map(|name| {
            if name.is_empty() || name.contains(['\n', '\r', '\0']) {
                // A newline would smuggle a second request into the first.
                return Err(Failure::Usage(
                    "a NAME must be non-empty, without newline, carriage return or NUL",
                ));
            }
            let local = Path::new(name).file_name().ok_or(Failure::Usage(
                "a NAME must end in a file name (not `..` or `/`)",
            ))?;
            Ok(Wanted { name, local })
        })
        .collect()
}

/// Downloads every wanted file into `dir`.
pub fn run(
    stream: &TcpStream,
    wanted: &[Wanted<'_>],
    dir: &Path,
    timeout: Duration,
) -> Result<(), Failure> {
    let mut failed = 0;
    for &Wanted { name, local } in wanted {
        let path = dir.join(local);
        match download(stream, name, &path, timeout) {
            Ok(size) => println!("{name}: {size} bytes saved to {}", path.display()),
            // The server said no; the connection is still good.
            Err(refused @ Failure::Server(_)) => {
                eprintln!("client: {name}: {refused}");
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    finish(stream, timeout)?;
    if failed > 0 {
        return Err(Failure::Downloads {
            failed,
            total: wanted.len(),
        });
    }
    Ok(())
}

/// Requests `name` and saves its body at `path`; returns its size.
fn download(
    mut stream: &TcpStream,
    name: &str,
    path: &Path,
    timeout: Duration,
) -> Result<u64, Failure> {
    stream
        .write_all(format!("{name}\n").as_bytes())
        .map_err(Failure::io("sending a request"))?;
    let header = read_header(stream, name.len(), timeout)?;
    if let Some(error) = header.get("error") {
        let error = error
            .as_str()
            .map_or_else(|| error.to_string(), str::to_string);
        return Err(Failure::Server(error));
    }
    let (Some(answered), Some(size)) = (
        header.get("name").and_then(Value::as_str),
        header.get("size").and_then(Value::as_u64),
    ) else {
        return Err(Failure::Protocol(format!(
            "a header with neither name and size nor error: {header}"
        )));
    };
    if answered != name {
        return Err(Failure::Protocol(format!(
            "asked for {name:?}, the header is for {answered:?}"
        )));
    }
    save(stream, size, path, timeout)?;
    Ok(size)
}

/// Reads a header: its `u32` length, bounded, then that much JSON.
fn read_header(stream: &TcpStream, name_len: usize, timeout: Duration) -> Result<Value, Failure> {
    let mut len = [0u8; 4];
    read_full(stream, &mut len, "a reply header", timeout)?;
    let len = u32::from_be_bytes(len) as usize;
    let max = 6 * name_len + MAX_HEADER_EXTRA;
    if len > max {
        return Err(Failure::Protocol(format!(
            "a header length of {len} bytes (more than {max}): is this a files-mode server?"
        )));
    }
    let mut json = vec![0u8; len];
    read_full(stream, &mut json, "a reply header", timeout)?;
    serde_json::from_slice(&json).map_err(|e| {
        Failure::Protocol(format!(
            "the header is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&json)
        ))
    })
}

/// Copies exactly `size` body bytes into a temporary file next to `path`,
/// then renames it to `path`. On any failure the temporary file is removed,
/// so `path` is either the whole download or untouched.
fn save(stream: &TcpStream, size: u64, path: &Path, timeout: Duration) -> Result<(), Failure> {
    let part = part_path(path);
    // create_new: never follows a symlink or reuses a file someone put there.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(|source| Failure::Save {
            path: part.clone(),
            source,
        })?;
    let copied = copy_body(stream, &mut file, size, &part, timeout).and_then(|()| {
        // The data is in the file; only now may it carry the real name.
        // (A rename over an existing file replaces it, like `curl -O`.)
        fs::rename(&part, path).map_err(|source| Failure::Save {
            path: path.to_path_buf(),
            source,
        })
    });
    if copied.is_err() {
        let _ = fs::remove_file(&part);
    }
    copied
}

/// `dir/.NAME.part-PID`: hidden, and distinct per process, so two clients
/// (or a killed earlier run) never write the same temporary file.
fn part_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".part-{}", std::process::id()));
    path.with_file_name(name)
}

/// Reads exactly `size` bytes from the stream into `file`.
fn copy_body(
    stream: &TcpStream,
    file: &mut File,
    size: u64,
    part: &Path,
    timeout: Duration,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; PIECE];
    let mut got = 0u64;
    while got < size {
        // Never ask for more than the body has left: the bytes after it are
        // the next reply's.
        let want = usize::try_from(size - got).map_or(PIECE, |left| left.min(PIECE));
        let n = read_some(
            stream,
            &mut buf[..want],
            "the file body",
            (got, size),
            timeout,
        )?;
        file.write_all(&buf[..n]).map_err(|source| Failure::Save {
            path: part.to_path_buf(),
            source,
        })?;
        got += n as u64;
    }
    Ok(())
}

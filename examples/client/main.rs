//! # The client half of every echoloop mode
//!
//! A **blocking** `std::net` client, one thread per job, written to be read
//! next to the server: `src/` shows how one thread serves thousands of
//! sockets without ever blocking; this shows the other side, where blocking
//! calls are the simple and right tool, as long as every read knows how much
//! it wants and how long it may wait.
//!
//! ```text
//! cargo run --example client -- [--udp] [--mode MODE] ADDR [NAME...]
//! printf 'hello\n' | cargo run --example client -- --mode upper 127.0.0.1:7878
//! cargo run --example client -- --mode files 127.0.0.1:7878 hello.txt
//! ```
//!
//! The socket tutorials this project grew from pair every server with a
//! client, and their clients share a handful of bugs. Each module names the
//! ones it avoids; the big ones:
//!
//! - **One `recv` is not one message.** TCP is a byte stream: a reply may
//!   arrive in pieces, or glued to the next one. Every TCP read here knows
//!   how many bytes it is waiting for (the line we sent, a length prefix) and
//!   loops until it has them (`tcp::read_full`).
//! - **One `send` may not send everything**: `write_all`, never a bare
//!   `write`.
//! - **No timeout means waiting forever** for a reply that will not come:
//!   every blocking read has one (`--timeout`), and its expiry is reported as
//!   what it is.
//! - **A length in a header is a claim**, not a fact: it is checked before
//!   anything is allocated, and a body that ends early is reported, not saved
//!   as if it were complete.
//! - **The server is untrusted input**: a file name it sends back never
//!   chooses where we write.
//! - **Errors have causes**: "connection refused", "no reply within 5 s",
//!   "the server closed the connection after 3 of 10 bytes" and "the server
//!   answered with an error" are different messages and all exit 1; bad
//!   usage exits 2. Nothing panics.
//!
//! | file | mode |
//! |---|---|
//! | `tcp.rs` | connecting, reading exactly N bytes, closing cleanly |
//! | `lines.rs` | `echo` and `upper` over TCP: a line out, the same length back |
//! | `framed.rs` | `framed`: each line as one length-prefixed frame |
//! | `chat.rs` | `chat`: a reader thread for the room, stdin for our lines |
//! | `files.rs` | `files`: header length, JSON header, exactly `size` bytes |
//! | `udp.rs` | every mode over UDP: a datagram per line, loss detection |
//! | `failure.rs` | every way a run can fail, and its exit code |

mod chat;
mod failure;
mod files;
mod framed;
mod lines;
mod tcp;
mod udp;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use failure::Failure;

/// Talks to an echoloop server (or any server speaking its protocols).
///
/// Reads lines from stdin and prints what comes back: echo and upper send
/// each line and wait for all of it to return; framed sends each line as one
/// u32-length-prefixed frame; chat prints the room while sending your lines;
/// files downloads each NAME into --output-dir. --udp sends one datagram per
/// line instead.
///
/// Exit status: 0 when everything was answered, 1 when the server could not
/// be reached, answered with an error, closed early, did not answer within
/// --timeout, or a datagram was lost; 2 for bad usage.
#[derive(Debug, Parser)]
#[command(about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// Use UDP: one datagram per stdin line, each reply awaited for --timeout.
    #[arg(long)]
    udp: bool,

    /// The protocol the server speaks (its --mode).
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,

    /// Seconds to wait for a connection, for the next bytes of a reply, for
    /// a datagram's answer, and (chat) for the server to let us go after our
    /// input ended. Fractions allowed, e.g. 0.5.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_timeout)]
    timeout: Duration,

    /// files mode: directory the downloads are saved in.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    output_dir: PathBuf,

    /// Server address, e.g. 127.0.0.1:7878, [::1]:7878 or localhost:7878.
    #[arg(value_name = "ADDR")]
    addr: String,

    /// files mode: the files to download (paths inside the server's --root).
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

const EXAMPLES: &str = "\
Examples (from the repository, `client` is `cargo run --example client --`):
  client 127.0.0.1:7878                          type lines, each comes back (Ctrl-D ends)
  client --udp 127.0.0.1:7878                    the same, one datagram per line
  printf 'hello\\n' | client --mode upper 127.0.0.1:7878
  client --mode chat 127.0.0.1:7878              in two terminals
  client --mode files -o /tmp 127.0.0.1:7878 hello.txt";

/// The server's modes, as its `--mode` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every byte comes back.
    Echo,
    /// ASCII letters come back upper-cased.
    Upper,
    /// u32 big-endian length + payload frames, echoed whole.
    Framed,
    /// Lines go to every other client.
    Chat,
    /// Download files by name.
    Files,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err("must be more than 0 and at most 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Whatever was printed so far goes out before the error line.
            let _ = io::stdout().flush();
            eprintln!("client: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let files = cli.mode == Mode::Files && !cli.udp;
    if files && cli.names.is_empty() {
        return Err(Failure::Usage(
            "--mode files needs at least one NAME to download",
        ));
    }
    if !files && !cli.names.is_empty() {
        return Err(Failure::Usage(
            "NAME arguments are only for --mode files over TCP",
        ));
    }
    if cli.udp {
        return udp::run(&cli.addr, cli.mode, cli.timeout);
    }
    let connect = || tcp::connect(&cli.addr, cli.timeout);
    match cli.mode {
        Mode::Echo | Mode::Upper => lines::run(&connect()?, cli.timeout),
        Mode::Framed => framed::run(&connect()?, cli.timeout),
        Mode::Chat => chat::run(connect()?, cli.timeout),
        Mode::Files => {
            // Every name is checked before the first request, so a typo in
            // the last one does not stop a run halfway.
            let wanted = files::wanted(&cli.names)?;
            if !cli.output_dir.is_dir() {
                return Err(Failure::Usage("--output-dir must be an existing directory"));
            }
            files::run(&connect()?, &wanted, &cli.output_dir, cli.timeout)
        }
    }
}

/// Reads the next stdin line (with its `\n`, if it had one) into `line`,
/// replacing what was there. Returns false at the end of input.
fn next_line(input: &mut impl io::BufRead, line: &mut Vec<u8>) -> Result<bool, Failure> {
    line.clear();
    let n = input
        .read_until(b'\n', line)
        .map_err(Failure::io("reading stdin"))?;
    Ok(n > 0)
}

/// A line without its `\n` (or `\r\n`), for protocols where something else
/// (a frame, a datagram) carries the boundary.
fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

//! `--mode chat` over real sockets: lines broadcast to every other member
//! as `<addr>: line`, join/leave notices, overlong lines refused, and a
//! member that does not read dropped without stalling the room.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use common::{is_closed, start, test_config, Running};
use echoloop::{Config, Mode};

fn chat_config() -> Config {
    Config {
        mode: Mode::Chat,
        ..test_config()
    }
}

/// One chat client: a writer, a buffered reader on the same socket, and the
/// address the server knows it by (its local address).
struct Member {
    w: TcpStream,
    r: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Member {
    fn join(server: &Running) -> Member {
        let w = server.connect();
        let addr = w.local_addr().unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Member { w, r, addr }
    }

    fn say(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
    }

    /// The next line, newline included; fails on timeout or EOF.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).expect("read_line");
        assert!(n > 0, "unexpected EOF");
        line
    }

    /// Reads until EOF, at most `limit` lines; true if EOF came.
    fn reads_eof_within(&mut self, limit: usize) -> bool {
        for _ in 0..limit {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return true, // a reset also ends it
            }
        }
        false
    }
}

fn joined(m: &Member) -> String {
    format!("* {} joined\n", m.addr)
}

fn left(m: &Member) -> String {
    format!("* {} left\n", m.addr)
}

/// Three members join in turn; each sees the join notices of those who
/// came after it. Returns them with every notice so far consumed.
fn three_members(server: &Running) -> (Member, Member, Member) {
    let mut a = Member::join(server);
    server.wait_stats("a accepted", |s| s.accepted == 1);
    let mut b = Member::join(server);
    assert_eq!(a.line(), joined(&b));
    let c = Member::join(server);
    assert_eq!(a.line(), joined(&c));
    assert_eq!(b.line(), joined(&c));
    (a, b, c)
}

/// Broadcast order per sender: N lines from one member reach each other
/// member exactly once, in order, prefixed with the sender's address; the
/// sender never gets its own lines back.
#[test]
fn lines_reach_every_other_member_in_order() {
    let server = start(chat_config());
    let (mut a, mut b, mut c) = three_members(&server);
    const N: usize = 300;
    for i in 0..N {
        a.say(&format!("line {i} from a"));
    }
    for i in 0..N {
        let want = format!("{}: line {i} from a\n", a.addr);
        assert_eq!(b.line(), want);
        assert_eq!(c.line(), want);
    }
    // `a` got none of its own lines: the next thing it reads is from `b`.
    b.say("hi a");
    assert_eq!(a.line(), format!("{}: hi a\n", b.addr));
    assert_eq!(c.line(), format!("{}: hi a\n", b.addr));
    // CRLF-terminated lines arrive without the `\r`.
    c.w.write_all(b"crlf\r\n").unwrap();
    assert_eq!(a.line(), format!("{}: crlf\n", c.addr));
    assert_eq!(b.line(), format!("{}: crlf\n", c.addr));
}

/// Join and leave notices: `* <addr> joined` to those already present when
/// a member connects, `* <addr> left` to those remaining when it goes.
#[test]
fn join_and_leave_notices() {
    let server = start(chat_config());
    let (mut a, b, mut c) = three_members(&server);
    let gone = left(&b);
    drop(b);
    assert_eq!(a.line(), gone);
    assert_eq!(c.line(), gone);
    // A half-close (EOF) is a leave too.
    c.w.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(a.line(), left(&c));
    assert!(
        c.reads_eof_within(1),
        "server closes after the member's EOF"
    );
    server.wait_stats("b and c closed", |s| s.closed == 2 && s.active == 1);
}

/// A line longer than max-line gets `error: line exceeds N bytes` and a
/// close; lines before it are still broadcast, the overlong one never is,
/// and the others then see the member leave.
#[test]
fn overlong_line_gets_an_error_and_a_close() {
    let server = start(Config {
        max_line: 16,
        ..chat_config()
    });
    let mut a = Member::join(&server);
    server.wait_stats("a accepted", |s| s.accepted == 1);
    let mut b = Member::join(&server);
    assert_eq!(a.line(), joined(&b));

    b.w.write_all(b"short\n").unwrap();
    b.w.write_all(&[b'x'; 100]).unwrap();
    b.w.write_all(b"\n").unwrap();
    assert_eq!(b.line(), "error: line exceeds 16 bytes\n");
    assert!(is_closed(b.r.get_mut()), "server closes after the error");
    let stats = server.wait_stats("protocol error counted", |s| s.protocol_errors == 1);
    assert_eq!(stats.protocol_errors, 1);

    assert_eq!(a.line(), format!("{}: short\n", b.addr));
    let gone = left(&b);
    drop(b);
    assert_eq!(
        a.line(),
        gone,
        "the overlong line itself is never broadcast"
    );
}

/// A member that never reads is disconnected once its pending output passes
/// max-pending (counted in `slow_consumers`), while the others keep chatting:
/// they see it leave, and a line sent after the drop still arrives.
#[test]
fn non_reading_member_is_dropped_and_the_room_goes_on() {
    let server = start(Config {
        max_pending: 64 * 1024,
        ..chat_config()
    });
    // `slow` never reads; `talker` floods; `reader` keeps up.
    let (mut talker, mut reader, slow) = three_members(&server);
    let payload = "y".repeat(1000);
    let flood_line = format!("{}: {payload}\n", talker.addr);
    let slow_left = left(&slow);

    // Rounds of 32 lines (~32 KiB), each read by `reader` before the next,
    // so only `slow`'s queue can grow. Bounded: 64 MiB in all, far more
    // than the kernel buffers between us and `slow` can hold.
    let mut saw_left = false;
    let mut rounds = 0;
    while server.stats().slow_consumers == 0 {
        rounds += 1;
        assert!(rounds <= 2048, "slow member never dropped");
        for _ in 0..32 {
            talker.say(&payload);
        }
        let mut got = 0;
        while got < 32 {
            let line = reader.line();
            if line == slow_left {
                saw_left = true;
            } else {
                assert_eq!(line, flood_line);
                got += 1;
            }
        }
    }

    // The leave notice and the new line may arrive in either order: the
    // server can read the line in the same event batch that closes `slow`.
    talker.say("after the drop");
    let after = format!("{}: after the drop\n", talker.addr);
    let mut saw_after = false;
    for _ in 0..1_000_000 {
        if saw_left && saw_after {
            break;
        }
        let line = reader.line();
        if line == slow_left {
            saw_left = true;
        } else if line == after {
            saw_after = true;
        } else {
            assert!(!saw_after, "flood line after the new one: {line:?}");
            assert_eq!(line, flood_line);
        }
    }
    assert!(
        saw_left && saw_after,
        "missing the leave notice or the new line"
    );
    let stats = server.wait_stats("slow member closed", |s| s.closed >= 1);
    assert_eq!(stats.slow_consumers, 1);
    assert_eq!(stats.active, 2, "talker and reader are still connected");
    drop(slow);
}

/// A member that floods the room with short lines (each line grows about
/// five times with its prefix) does not get members that do read dropped as
/// slow: the server hands the room one read's lines at a time, and every
/// line reaches every reader in order.
#[test]
fn a_flooding_sender_does_not_get_reading_members_dropped() {
    const LINES: usize = 100_000;
    let server = start(chat_config());
    let (a, mut b, mut c) = three_members(&server);
    let mut w = a.w.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(LINES * 8);
        for i in 0..LINES {
            batch.extend_from_slice(format!("{i}\n").as_bytes());
        }
        w.write_all(&batch).unwrap();
    });
    let reader = std::thread::spawn(move || {
        let prefix = format!("{}: ", a.addr);
        for i in 0..LINES {
            assert_eq!(c.line(), format!("{prefix}{i}\n"), "member c, line {i}");
        }
        c
    });
    let prefix = format!("{}: ", a.addr);
    for i in 0..LINES {
        assert_eq!(b.line(), format!("{prefix}{i}\n"), "member b, line {i}");
    }
    reader.join().unwrap();
    sender.join().unwrap();
    assert_eq!(server.stats().slow_consumers, 0);
}

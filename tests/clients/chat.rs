//! chat: two client processes in one room, a clean exit at end of input
//! (half-close) and when the server closes, and the server's error line.

use echoloop::{Config, Mode};

use super::common::{start, test_config};
use super::{run, Client};

fn chat_config() -> Config {
    Config {
        mode: Mode::Chat,
        ..test_config()
    }
}

/// Lines typed into one client are printed by the other as `<addr>: line`
/// while it waits for input of its own; end of input leaves the room
/// cleanly (exit 0, the others see `left`); a server shutdown ends the
/// last client cleanly too.
#[test]
fn two_clients_chat_and_leave_cleanly() {
    let server = start(chat_config());
    let addr = server.tcp.to_string();
    let mut bob = Client::spawn(&["--mode", "chat", &addr]);
    server.wait_stats("bob in the room", |s| s.active == 1);
    let mut alice = Client::spawn(&["--mode", "chat", &addr]);
    bob.wait_line("alice's join notice", |l| {
        l.starts_with("* ") && l.ends_with(" joined")
    });

    alice.send("hello room");
    let line = bob.wait_line("alice's line", |l| l.ends_with(": hello room"));
    let alice_addr = line.strip_suffix(": hello room").unwrap().to_string();
    bob.send("hi alice");
    alice.wait_line("bob's line", |l| l.ends_with(": hi alice"));

    // Alice's end of input: she half-closes, the server lets her go.
    alice.close_stdin();
    let status = alice.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", alice.stderr());
    // The close that answers our own half-close is not news.
    assert!(
        !alice.stderr().contains("closed the connection"),
        "{}",
        alice.stderr()
    );
    let said = String::from_utf8(alice.stdout()).unwrap();
    assert!(
        !said.contains("hello room"),
        "a sender never sees its own line"
    );
    bob.wait_line("alice's leave notice", |l| {
        l == format!("* {alice_addr} left")
    });

    // The server goes away while Bob still has his input open.
    server.stop();
    let status = bob.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", bob.stderr());
    assert!(bob.stderr().contains("the server closed the connection"));
}

/// A last line without a newline is still sent (the server drops partial
/// lines at EOF, so the client finishes it).
#[test]
fn last_line_without_newline_is_delivered() {
    let server = start(chat_config());
    let addr = server.tcp.to_string();
    let mut listener = Client::spawn(&["--mode", "chat", &addr]);
    server.wait_stats("listener in the room", |s| s.active == 1);
    let out = run(&["--mode", "chat", &addr], b"first\nno newline");
    out.assert_code(0);
    assert!(
        !out.stderr.contains("closed the connection"),
        "{}",
        out.stderr
    );
    listener.wait_line("the unterminated line", |l| l.ends_with(": no newline"));
}

/// A line over the server's --max-line: the server's `error: ...` line is
/// printed, the client reports it and exits 1.
#[test]
fn overlong_line_error_is_reported() {
    let server = start(Config {
        max_line: 16,
        ..chat_config()
    });
    let out = run(
        &["--mode", "chat", &server.tcp.to_string()],
        b"this line is much longer than sixteen bytes\n",
    );
    out.assert_code(1)
        .assert_stderr("the server answered with an error: line exceeds 16 bytes");
    assert_eq!(out.stdout(), "error: line exceeds 16 bytes\n");
}

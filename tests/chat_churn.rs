//! Connection churn cannot bury the chat room. Every chat member costs a
//! join and a leave notice handed to every other member, so a client that
//! connects and resets in a loop makes room work much faster than the room
//! hands it out. The server stops accepting while the room is far behind:
//! the newcomers wait in the kernel's backlog, and a member's line is not
//! queued behind the notices of every connection the attacker could open.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{start, test_config};
use echoloop::{Config, Mode};

const MEMBERS: usize = 100;
const CHURN: usize = 1000;

/// Reads lines from `r` until one satisfies `stop`; returns how many notice
/// lines (`* ...`) came before it.
fn notices_until(r: &mut BufReader<TcpStream>, stop: impl Fn(&str) -> bool) -> usize {
    let mut notices = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).expect("member 0 reads");
        assert!(n > 0, "member 0 was disconnected");
        if stop(&line) {
            return notices;
        }
        if line.starts_with("* ") {
            notices += 1;
        }
    }
}

/// A thousand connections opened and reset at once, then a member's line:
/// the line reaches member 0 ahead of most of their join and leave notices.
/// Here 110 to 170 of the 2,000 notices come first. (Before the room
/// bounded accepts, all 1,000 were accepted at once and their 1,000 joins
/// came first; against a live churn of 14,000 connections a second, a
/// member's line took 4 to 7 s and turns reached 190 ms.)
#[test]
fn churned_connections_do_not_bury_a_members_line() {
    let server = start(Config {
        mode: Mode::Chat,
        udp: None,
        backlog: 2 * CHURN as u32,
        ..test_config()
    });
    let members: Vec<TcpStream> = (0..MEMBERS).map(|_| server.connect()).collect();
    let mut first = BufReader::new(members[0].try_clone().unwrap());
    first
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Member 0 hears the join of every later member, the last one last.
    let last = members[MEMBERS - 1].local_addr().unwrap().to_string();
    notices_until(&mut first, |l| l.contains(&last));
    // The other members drain what they are sent, so none is dropped.
    let drainers: Vec<_> = members[1..]
        .iter()
        .map(|m| {
            let mut m = m.try_clone().unwrap();
            std::thread::spawn(move || std::io::copy(&mut m, &mut std::io::sink()))
        })
        .collect();

    let churn: Vec<TcpStream> = (0..CHURN).map(|_| server.connect()).collect();
    for c in churn {
        // A reset, as an abrupt client would end.
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    (&members[1]).write_all(b"probe\n").unwrap();
    let before = notices_until(&mut first, |l| l.ends_with(": probe\n"));
    eprintln!("notices before the probe line: {before} of {}", 2 * CHURN);
    assert!(
        before < CHURN / 2,
        "the line waited behind {before} churn notices"
    );
    drop(members);
    let stats = server.stop();
    for d in drainers {
        let _ = d.join();
    }
    assert_eq!(stats.active, 0);
}

//! A minimal HTTP client for the metrics tests: one request per connection
//! (the server closes after each response), with timeouts, reading until the
//! server closes. Only for loopback test servers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::IO_TIMEOUT;

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines as sent, without the status line.
    pub headers: Vec<String>,
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` as given, half-closes (so a head cut short is seen as
/// ended), and reads the response until the server closes (echoloop always
/// does after one response). Fails the test on a timeout.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    parse(&raw_bytes(addr, request))
}

/// Like [`raw`], without parsing.
pub fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    try_raw_bytes(addr, request, true).expect("request and response until close")
}

/// Like [`raw_bytes`], returning errors (a server not up yet) to the caller.
/// Without `half_close` for servers that take a client's FIN as giving up.
pub fn try_raw_bytes(addr: SocketAddr, request: &[u8], half_close: bool) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(request)?;
    if half_close {
        s.shutdown(std::net::Shutdown::Write)?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

/// `GET path`, asking the server to close after the response (echoloop
/// always does; other servers need to be told).
pub fn get_request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    raw(addr, &get_request(addr, path))
}

/// A scrape: `GET /metrics`, which must answer 200; returns the body.
pub fn scrape(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// Parses a response whose body runs to the end of the connection, checking
/// it against its Content-Length.
pub fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("end of response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let response = Response {
        status,
        headers: lines.map(str::to_string).collect(),
        body: body.to_string(),
    };
    if let Some(len) = response.header("content-length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            response.body.len(),
            "{response:?}"
        );
    }
    response
}

/// The value of the sample line `name value` in an exposition, if present.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (n, v) = line.split_once(' ')?;
        (n == name).then(|| v.parse().expect("sample value"))
    })
}

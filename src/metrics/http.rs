//! Just enough HTTP/1.1 for a scrape: read one request head, decide the
//! answer, write one response, close. Pure functions over bytes; the socket
//! side is `endpoint.rs`.
//!
//! What is accepted: a request line `METHOD SP target SP HTTP/1.x`, header
//! lines of the form `name: value`, ended by an empty line, at most
//! [`MAX_REQUEST`] bytes in all. `GET` (and `HEAD`) of `/metrics` (a query
//! string is ignored) is answered with the exposition; another path gets
//! 404, another method on `/metrics` 405, anything else 400. Headers are not
//! interpreted: every response says `Connection: close` and the connection
//! closes after it, so keep-alive, bodies and chunking never arise.

/// The longest request head we read; longer ones get 400. A scrape request
/// (Prometheus, curl) is a few hundred bytes.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;

/// The path that serves metrics.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// What to answer to the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The head is not complete yet: read more.
    Incomplete,
    /// The head is complete (or can never become valid): answer this.
    Reply(Reply),
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// 200 with the exposition; `head_only` for `HEAD` (no body).
    Metrics { head_only: bool },
    /// 404: a path other than `/metrics`.
    NotFound,
    /// 405: `/metrics` with a method other than GET or HEAD.
    MethodNotAllowed,
    /// 400, with the reason as the body.
    BadRequest(&'static str),
}

/// Looks at everything read so far (`buf` never exceeds `MAX_REQUEST`).
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let Some(head_len) = end_of_head(buf) else {
        if buf.len() >= MAX_REQUEST {
            return Parsed::Reply(Reply::BadRequest("request head too large"));
        }
        return Parsed::Incomplete;
    };
    Parsed::Reply(answer(&buf[..head_len]))
}

/// The length of the head including its terminating empty line: CRLF CRLF,
/// or bare LF LF (RFC 9112 lets a recipient accept LF alone).
fn end_of_head(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &buf[line_start..i];
        if (line.is_empty() || line == b"\r") && line_start > 0 {
            return Some(i + 1);
        }
        line_start = i + 1;
    }
    None
}

fn answer(head: &[u8]) -> Reply {
    let Ok(head) = std::str::from_utf8(head) else {
        return Reply::BadRequest("request head is not UTF-8");
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Reply::BadRequest("malformed request line");
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Reply::BadRequest("unsupported HTTP version");
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Reply::BadRequest("malformed method");
    }
    if !target.starts_with('/') {
        return Reply::BadRequest("request target must be a path");
    }
    // Each header is `name: value`; a line starting with whitespace would be
    // an obsolete folded continuation, which RFC 9112 lets us refuse.
    for line in lines.filter(|l| !l.is_empty()) {
        let well_formed = line
            .split_once(':')
            .is_some_and(|(name, _)| !name.is_empty() && !name.contains([' ', '\t']));
        if !well_formed {
            return Reply::BadRequest("malformed header line");
        }
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    match (path == METRICS_PATH, method) {
        (false, _) => Reply::NotFound,
        (true, "GET") => Reply::Metrics { head_only: false },
        (true, "HEAD") => Reply::Metrics { head_only: true },
        (true, _) => Reply::MethodNotAllowed,
    }
}

/// The whole response for `reply`. `exposition` renders the metrics; it is
/// called only for a 200.
pub(crate) fn response(reply: Reply, exposition: impl FnOnce() -> String) -> Vec<u8> {
    use super::exposition::CONTENT_TYPE;
    let (status, content_type, body, head_only) = match reply {
        Reply::Metrics { head_only } => ("200 OK", CONTENT_TYPE, exposition(), head_only),
        Reply::NotFound => ("404 Not Found", "text/plain", "not found\n".into(), false),
        Reply::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".into(),
            false,
        ),
        Reply::BadRequest(why) => ("400 Bad Request", "text/plain", format!("{why}\n"), false),
    };
    let allow = if reply == Reply::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(req: &str) -> Reply {
        match parse(req.as_bytes()) {
            Parsed::Reply(r) => r,
            Parsed::Incomplete => panic!("incomplete: {req:?}"),
        }
    }

    #[test]
    fn a_scrape_is_answered_with_metrics() {
        let prometheus = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version=0.0.4;q=0.5\r\nX-Prometheus-Scrape-Timeout-Seconds: 1\r\n\r\n";
        assert_eq!(reply(prometheus), Reply::Metrics { head_only: false });
        assert_eq!(
            reply("GET /metrics?x=1 HTTP/1.0\n\n"),
            Reply::Metrics { head_only: false }
        );
        assert_eq!(
            reply("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Reply::Metrics { head_only: true }
        );
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        for partial in [
            "",
            "GET /metrics HTTP/1.1",
            "GET /metrics HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert_eq!(parse(partial.as_bytes()), Parsed::Incomplete, "{partial:?}");
        }
    }

    #[test]
    fn other_paths_methods_and_garbage_are_refused() {
        assert_eq!(reply("GET / HTTP/1.1\r\n\r\n"), Reply::NotFound);
        assert_eq!(reply("GET /metricsx HTTP/1.1\r\n\r\n"), Reply::NotFound);
        assert_eq!(
            reply("POST /metrics HTTP/1.1\r\n\r\n"),
            Reply::MethodNotAllowed
        );
        for bad in [
            "\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "get /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
        ] {
            assert!(
                matches!(reply(bad), Reply::BadRequest(_)),
                "{bad:?} -> {:?}",
                reply(bad)
            );
        }
        let binary = b"GET /\xff HTTP/1.1\r\n\r\n";
        assert!(matches!(parse(binary), Parsed::Reply(Reply::BadRequest(_))));
    }

    #[test]
    fn an_oversized_head_is_refused_once_the_limit_is_reached() {
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST - 1, b'a');
        assert_eq!(parse(&big), Parsed::Incomplete);
        big.push(b'a');
        assert_eq!(
            parse(&big),
            Parsed::Reply(Reply::BadRequest("request head too large"))
        );
    }

    #[test]
    fn responses_say_their_length_and_close() {
        let ok = response(Reply::Metrics { head_only: false }, || "a 1\n".into());
        let ok = String::from_utf8(ok).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(ok.contains("Content-Length: 4\r\nConnection: close\r\n\r\na 1\n"));
        let head = response(Reply::Metrics { head_only: true }, || "a 1\n".into());
        assert!(String::from_utf8(head).unwrap().ends_with("\r\n\r\n"));
        let not_found = response(Reply::NotFound, || unreachable!("no exposition for a 404"));
        assert!(String::from_utf8(not_found)
            .unwrap()
            .starts_with("HTTP/1.1 404 "));
        let bad = String::from_utf8(response(Reply::MethodNotAllowed, String::new)).unwrap();
        assert!(bad.contains("Allow: GET, HEAD\r\n"), "{bad}");
    }
}

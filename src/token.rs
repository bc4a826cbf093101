//! Tokens: how the reactor tells its sockets apart.
//!
//! Every socket registered with a `mio::Poll` carries a [`Token`], and every
//! event hands it back; the reactor's loop is one `match` on it. A few fixed
//! tokens name the sockets there is one of per reactor; the metrics endpoint
//! takes the next ones (`metrics/endpoint.rs`); and every connection's token
//! is its key in the reactor's slab plus [`FIRST_CONN`], so the two ranges
//! never collide however many connections come and go.

use mio::Token;

use crate::metrics::{FIRST_SCRAPE, MAX_SCRAPES, METRICS};

/// The TCP listener.
pub(crate) const LISTENER: Token = Token(0);
/// The UDP socket.
pub(crate) const UDP: Token = Token(1);
/// SIGINT/SIGTERM (signal-hook's self-pipe), on the first reactor.
pub(crate) const SIGNALS: Token = Token(2);
/// The `ShutdownHandle`'s waker.
pub(crate) const WAKER: Token = Token(3);
/// Connection tokens start here: slab key `k` has `Token(k + FIRST_CONN)`.
pub(crate) const FIRST_CONN: usize = 16;

// The metrics tokens sit between the fixed ones and the connections'.
const _: () = {
    assert!(METRICS.0 > WAKER.0 && METRICS.0 < FIRST_SCRAPE);
    assert!(FIRST_SCRAPE + MAX_SCRAPES <= FIRST_CONN);
};

/// The token of the connection in slab slot `key`.
pub(crate) fn conn_token(key: usize) -> Token {
    Token(key + FIRST_CONN)
}

/// The slab key of a connection's token; `None` for a fixed token.
pub(crate) fn conn_key(token: Token) -> Option<usize> {
    token.0.checked_sub(FIRST_CONN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_round_trip_and_miss_the_fixed_ones() {
        assert_eq!(conn_key(conn_token(0)), Some(0));
        assert_eq!(conn_key(conn_token(41)), Some(41));
        for fixed in [LISTENER, UDP, SIGNALS, WAKER, METRICS] {
            assert_eq!(conn_key(fixed), None);
        }
    }
}

//! Tokens: how the reactor tells its sockets apart.
//!
//! Every socket registered with a `mio::Poll` carries a [`Token`], and every
//! event hands it back; the reactor's loop is one `match` on it. A few fixed
//! tokens name the sockets there is one of per reactor; the metrics endpoint
//! takes the next ones (its listener and up to `MAX_SCRAPES` scrape
//! connections, `metrics/endpoint.rs`); and every connection's token
//! is its key in the reactor's slab plus [`FIRST_CONN`], so the ranges
//! never collide however many connections come and go.

use mio::Token;

/// The TCP listener.
pub(crate) const LISTENER: Token = Token(0);
/// The UDP socket.
pub(crate) const UDP: Token = Token(1);
/// SIGINT/SIGTERM (signal-hook's self-pipe), on the first reactor.
pub(crate) const SIGNALS: Token = Token(2);
/// The `ShutdownHandle`'s waker.
pub(crate) const WAKER: Token = Token(3);
/// The `--metrics` listener (`metrics/endpoint.rs`).
pub(crate) const METRICS: Token = Token(4);
/// Scrape connections of the metrics endpoint: key `k` of its own small
/// slab has `Token(k + FIRST_SCRAPE)`.
const FIRST_SCRAPE: usize = 8;
/// Most scrape connections open at once: as many as there are tokens for
/// them between `FIRST_SCRAPE` and `FIRST_CONN`.
pub(crate) const MAX_SCRAPES: usize = 8;
/// Connection tokens start here: slab key `k` has `Token(k + FIRST_CONN)`.
pub(crate) const FIRST_CONN: usize = 16;

// The ranges, in order, never overlap: fixed, metrics, scrapes, connections.
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

/// True for the metrics listener's token and its scrape connections'.
pub(crate) fn is_metrics(token: Token) -> bool {
    token == METRICS || scrape_key(token).is_some()
}

/// The token of the metrics endpoint's scrape connection `key`.
pub(crate) fn scrape_token(key: usize) -> Token {
    debug_assert!(key < MAX_SCRAPES);
    Token(key + FIRST_SCRAPE)
}

/// The scrape connection key of `token`; `None` outside their range.
pub(crate) fn scrape_key(token: Token) -> Option<usize> {
    token
        .0
        .checked_sub(FIRST_SCRAPE)
        .filter(|&k| k < MAX_SCRAPES)
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
            assert_eq!(scrape_key(fixed), None);
        }
    }

    /// Scrape tokens round-trip, belong to the metrics endpoint, and stay
    /// out of the connections' range.
    #[test]
    fn scrape_tokens_sit_between_the_fixed_ones_and_the_connections() {
        for key in 0..MAX_SCRAPES {
            let token = scrape_token(key);
            assert_eq!(scrape_key(token), Some(key));
            assert!(is_metrics(token));
            assert_eq!(conn_key(token), None);
        }
        assert!(is_metrics(METRICS));
        for other in [LISTENER, UDP, SIGNALS, WAKER, conn_token(0)] {
            assert!(!is_metrics(other));
        }
    }
}

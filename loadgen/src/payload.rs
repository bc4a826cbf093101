//! The payload codec: what loadgen puts in each message and how an echo is checked.
//!
//! A message on the wire is
//!
//! ```text
//! [u32 BE length]   only with --framed: the payload size, as echoloop's framed mode wants
//! u32 BE conn id    which connection (or UDP socket) sent it
//! u64 BE seq        per-connection sequence number, 0, 1, 2, ...
//! u32 BE check      a hash of (conn, seq): tells "a real header" from garbage
//! pattern bytes     byte i = PATTERN[i] ^ key(conn, seq), up to --size
//! ```
//!
//! Every byte of an echo is compared with what (conn, seq) encodes, so a flipped bit anywhere
//! is caught. The check word lets the verifier trust conn and seq from a damaged message, so
//! it can tell "message 7 came back twice" from "message 7 came back with byte 40 changed".
//! The pattern depends on conn and seq, so bodies swapped between messages are caught too.
//!
//! Encoding appends to a caller-owned buffer and decoding borrows the received bytes: nothing
//! is allocated per message.
//!
//! Public is the wire format ([`Codec::encode_into`], [`Codec::decode`], the sizes), so a
//! test peer or another tool can build and check loadgen's messages; how a mismatch is
//! described and how a damaged stream is resynchronised are loadgen's own.

/// Bytes of conn id + seq + check at the start of every payload; the minimum `--size`.
pub const HEADER_LEN: usize = 16;
/// Bytes of the `--framed` length prefix.
pub const FRAME_PREFIX: usize = 4;
/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// The one read buffer of a reactor thread: 64 KiB of TCP stream or one whole datagram.
pub(crate) const SCRATCH_LEN: usize = 64 * 1024 + MAX_DATAGRAM;

/// Bytes of one `size`-byte message on the wire, the `--framed` prefix included.
pub fn wire_len(size: usize, framed: bool) -> usize {
    size + if framed { FRAME_PREFIX } else { 0 }
}

/// What an echoed message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Every byte is what `(conn, seq)` encodes.
    Intact {
        /// Connection id in the header.
        conn: u32,
        /// Sequence number in the header.
        seq: u64,
    },
    /// The header is self-consistent (its check word matches), so `conn` and `seq` can be
    /// trusted, but some other byte (prefix or pattern) is wrong.
    Damaged {
        /// Connection id in the header.
        conn: u32,
        /// Sequence number in the header.
        seq: u64,
    },
    /// Not even the header survived: the message cannot be attributed.
    Garbage,
}

/// Encodes and decodes messages of one size and framing.
#[derive(Debug, Clone)]
pub struct Codec {
    size: usize,
    framed: bool,
    /// The base pattern, `size` bytes; only bytes from `HEADER_LEN` on are used.
    pattern: Box<[u8]>,
}

impl Codec {
    /// A codec for `size`-byte payloads. Panics if `size < HEADER_LEN`: the config
    /// validation rejects that first.
    pub fn new(size: usize, framed: bool) -> Self {
        assert!(size >= HEADER_LEN, "size {size} below header length");
        let pattern = (0..size)
            .map(|i| (mix(i as u64 ^ 0x5eed) >> 56) as u8)
            .collect();
        Codec {
            size,
            framed,
            pattern,
        }
    }

    /// Bytes of one message on the wire, prefix included.
    pub fn wire_len(&self) -> usize {
        wire_len(self.size, self.framed)
    }

    /// Appends message `(conn, seq)` to `out`. Allocates only if `out` lacks capacity.
    pub fn encode_into(&self, conn: u32, seq: u64, out: &mut Vec<u8>) {
        if self.framed {
            out.extend_from_slice(&(self.size as u32).to_be_bytes());
        }
        out.extend_from_slice(&conn.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&check_word(conn, seq).to_be_bytes());
        let key = key(conn, seq);
        out.extend(self.pattern[HEADER_LEN..].iter().map(|b| b ^ key));
    }

    /// Classifies one echoed message of exactly `wire_len()` bytes (anything else is
    /// `Garbage`).
    pub fn decode(&self, wire: &[u8]) -> Decoded {
        if wire.len() != self.wire_len() {
            return Decoded::Garbage;
        }
        let (prefix_ok, payload) = if self.framed {
            let (prefix, rest) = wire.split_at(FRAME_PREFIX);
            (prefix == (self.size as u32).to_be_bytes(), rest)
        } else {
            (true, wire)
        };
        let conn = u32::from_be_bytes(payload[0..4].try_into().expect("4 bytes"));
        let seq = u64::from_be_bytes(payload[4..12].try_into().expect("8 bytes"));
        let check = u32::from_be_bytes(payload[12..16].try_into().expect("4 bytes"));
        if check != check_word(conn, seq) {
            return Decoded::Garbage;
        }
        let key = key(conn, seq);
        // Written as a fold without early exit so the compiler vectorises it.
        let diff = payload[HEADER_LEN..]
            .iter()
            .zip(&self.pattern[HEADER_LEN..])
            .fold(0u8, |acc, (got, base)| acc | (got ^ base ^ key));
        if prefix_ok && diff == 0 {
            Decoded::Intact { conn, seq }
        } else {
            Decoded::Damaged { conn, seq }
        }
    }
}

/// Most received bytes a first-error description quotes.
pub(crate) const QUOTE_MAX: usize = 80;

/// `bytes` (at most [`QUOTE_MAX`] of them) as a quoted, escaped string: printable ASCII as
/// is, everything else `\n`, `\xNN` and so on, `...` after the quote when cut short. A
/// server's error message shows as text among the binary.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(QUOTE_MAX)];
    let more = if shown.len() < bytes.len() { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}

impl Codec {
    /// How `got` differs from message `(conn, seq)` as sent: the first differing byte
    /// (offset on the wire, framed prefix included), how many differ, and a length
    /// mismatch. Allocates: meant for the first error only.
    pub(crate) fn describe_diff(&self, conn: u32, seq: u64, got: &[u8]) -> String {
        let mut want = Vec::with_capacity(self.wire_len());
        self.encode_into(conn, seq, &mut want);
        let pairs = || want.iter().zip(got);
        let differing = pairs().filter(|(w, g)| w != g).count();
        let mut text = match pairs().position(|(w, g)| w != g) {
            Some(i) => format!(
                "byte {i} differs (expected {:#04x}, got {:#04x})",
                want[i], got[i]
            ),
            None if got.len() == want.len() => "no byte differs".to_string(),
            None => String::new(),
        };
        if differing > 1 {
            let compared = want.len().min(got.len());
            text.push_str(&format!(", {differing} of {compared} bytes differ"));
        }
        if got.len() != want.len() {
            let sep = if text.is_empty() { "" } else { "; " };
            text.push_str(&format!(
                "{sep}{} bytes long, expected {}",
                got.len(),
                want.len()
            ));
        }
        text
    }

    /// Bytes from the start of a message on the wire to the end of its header: what must
    /// be seen to recognise a message start.
    pub(crate) fn header_span(&self) -> usize {
        HEADER_LEN + if self.framed { FRAME_PREFIX } else { 0 }
    }

    /// Where in `bytes` the first message of connection `conn` with a seq below `below`
    /// starts, and its seq: its header's conn id and seq agree with its check word (random
    /// bytes pass with odds of about 2^-64). How a damaged stream finds its footing again.
    /// The framed prefix is not checked: damage to it is judged when the message is.
    pub(crate) fn find_header(&self, conn: u32, below: u64, bytes: &[u8]) -> Option<(usize, u64)> {
        let skip = self.header_span() - HEADER_LEN;
        let want = conn.to_be_bytes();
        (0..(bytes.len() + 1).saturating_sub(self.header_span())).find_map(|at| {
            let h = &bytes[at + skip..at + skip + HEADER_LEN];
            if h[0..4] != want {
                return None;
            }
            let seq = u64::from_be_bytes(h[4..12].try_into().expect("8 bytes"));
            let check = u32::from_be_bytes(h[12..16].try_into().expect("4 bytes"));
            (seq < below && check == check_word(conn, seq)).then_some((at, seq))
        })
    }

    /// Whether `got` is how message `(conn, seq)` begins on the wire (a cut-off echo).
    pub(crate) fn is_prefix_of(&self, conn: u32, seq: u64, got: &[u8]) -> bool {
        let mut want = Vec::with_capacity(self.wire_len());
        self.encode_into(conn, seq, &mut want);
        want.starts_with(got)
    }
}

/// SplitMix64 finaliser: cheap, and every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn check_word(conn: u32, seq: u64) -> u32 {
    mix(seq ^ mix(u64::from(conn) ^ 0xC0DE)) as u32
}

fn key(conn: u32, seq: u64) -> u8 {
    (mix(seq.rotate_left(7) ^ u64::from(conn)) >> 32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(codec: &Codec, conn: u32, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(codec.wire_len());
        codec.encode_into(conn, seq, &mut out);
        out
    }

    /// An untouched message decodes as intact with its conn and seq, framed or not.
    #[test]
    fn round_trip() {
        for framed in [false, true] {
            let codec = Codec::new(64, framed);
            let msg = message(&codec, 7, 123_456_789);
            assert_eq!(msg.len(), codec.wire_len());
            let want = Decoded::Intact {
                conn: 7,
                seq: 123_456_789,
            };
            assert_eq!(codec.decode(&msg), want);
        }
    }

    /// The framed prefix is the payload size, big-endian.
    #[test]
    fn framed_prefix_is_length() {
        let codec = Codec::new(300, true);
        let msg = message(&codec, 1, 2);
        assert_eq!(&msg[..4], &300u32.to_be_bytes());
        assert_eq!(msg.len(), 304);
    }

    /// Flipping any single bit anywhere is detected: in the header it makes garbage,
    /// elsewhere a damaged message whose conn and seq are still known.
    #[test]
    fn every_byte_is_checked() {
        let codec = Codec::new(48, true);
        let clean = message(&codec, 3, 9);
        for i in 0..clean.len() {
            for bit in 0..8 {
                let mut msg = clean.clone();
                msg[i] ^= 1 << bit;
                let header = FRAME_PREFIX..FRAME_PREFIX + HEADER_LEN;
                let want = if header.contains(&i) {
                    Decoded::Garbage
                } else {
                    Decoded::Damaged { conn: 3, seq: 9 }
                };
                assert_eq!(codec.decode(&msg), want, "byte {i} bit {bit}");
            }
        }
    }

    /// Bodies differ between sequence numbers and connections, so a body from another
    /// message under a valid header is caught.
    #[test]
    fn bodies_depend_on_conn_and_seq() {
        let codec = Codec::new(64, false);
        let a = message(&codec, 1, 1);
        let mut spliced = message(&codec, 1, 2);
        spliced[HEADER_LEN..].copy_from_slice(&a[HEADER_LEN..]);
        assert_eq!(codec.decode(&spliced), Decoded::Damaged { conn: 1, seq: 2 });
        assert_ne!(message(&codec, 2, 1)[HEADER_LEN..], a[HEADER_LEN..]);
    }

    /// A message of the wrong length (a truncated datagram) is garbage; the minimum size
    /// is exactly the header.
    #[test]
    fn wrong_length_and_minimum_size() {
        let codec = Codec::new(HEADER_LEN, false);
        let msg = message(&codec, 0, 0);
        assert_eq!(msg.len(), HEADER_LEN);
        assert_eq!(codec.decode(&msg), Decoded::Intact { conn: 0, seq: 0 });
        assert_eq!(codec.decode(&msg[..HEADER_LEN - 1]), Decoded::Garbage);
    }

    /// A diff names the first differing byte with both values and counts the rest; a
    /// length mismatch is said too.
    #[test]
    fn diff_descriptions() {
        let codec = Codec::new(64, false);
        let clean = message(&codec, 3, 17);
        let mut upper = clean.clone();
        upper[20] ^= 0x20;
        upper[30] ^= 0x20;
        let want = format!(
            "byte 20 differs (expected {:#04x}, got {:#04x}), 2 of 64 bytes differ",
            clean[20], upper[20]
        );
        assert_eq!(codec.describe_diff(3, 17, &upper), want);
        assert_eq!(codec.describe_diff(3, 17, &clean), "no byte differs");
        assert_eq!(
            codec.describe_diff(3, 17, &clean[..10]),
            "10 bytes long, expected 64"
        );
        assert!(codec.is_prefix_of(3, 17, &clean[..10]));
        assert!(!codec.is_prefix_of(3, 17, &upper[..30]));
    }

    /// Quoting keeps text readable, escapes the rest, and cuts at 80 bytes.
    #[test]
    fn quoting() {
        assert_eq!(
            quote(b"\0\0\x2aerror: \"x\"\n"),
            r#""\x00\x00*error: \"x\"\n""#
        );
        let long = quote(&[b'a'; 100]);
        assert_eq!(long, format!("\"{}\"...", "a".repeat(80)));
    }

    /// The next message start is found after any junk, framed or not, and only for this
    /// connection and a seq already sent.
    #[test]
    fn find_header_after_junk() {
        for framed in [false, true] {
            let codec = Codec::new(32, framed);
            let mut bytes = b"junk!".to_vec();
            codec.encode_into(9, 4, &mut bytes);
            codec.encode_into(3, 5, &mut bytes);
            assert_eq!(
                codec.find_header(3, 6, &bytes),
                Some((5 + codec.wire_len(), 5))
            );
            assert_eq!(codec.find_header(9, 6, &bytes), Some((5, 4)));
            assert_eq!(
                codec.find_header(3, 5, &bytes),
                None,
                "seq 5 was never sent"
            );
            let cut = &bytes[..5 + codec.wire_len() + codec.header_span() - 1];
            assert_eq!(codec.find_header(3, 6, cut), None, "header cut short");
            assert_eq!(codec.find_header(3, 6, b""), None);
        }
    }

    /// Encoding into a buffer with capacity does not reallocate.
    #[test]
    fn encode_reuses_capacity() {
        let codec = Codec::new(64, false);
        let mut out = Vec::with_capacity(codec.wire_len() * 4);
        let ptr = out.as_ptr();
        for seq in 0..4 {
            codec.encode_into(0, seq, &mut out);
        }
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(out.len(), 256);
    }
}

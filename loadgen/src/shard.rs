//! `--shard I/N`: which connections of a run this process owns, and which of them each of
//! its threads owns.
//!
//! A run of `C` connections split over `N` shards gives shard `I` the global ids
//! `I, I+N, I+2N, ...` below `C`. Within a shard, thread `t` of `T` takes every `T`-th of
//! those, so it owns the global ids `I + t*N + k*(N*T)`: an arithmetic progression, a
//! [`Lane`]. Ids are global, so they never collide between shards (every payload carries
//! its id, and echoes are verified against it), and the open-loop schedule is the run's,
//! not the shard's: message `m` of connection `c` is due at the same instant whichever
//! shard sends it (`schedule.rs`), so `N` shards together send exactly `--rate`.
//! Pure arithmetic, unit-tested.

use std::fmt;

/// One shard of a run: index `I` of `N` (`0 <= I < N`). `0/1` is an unsharded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// This shard, `I`.
    pub index: usize,
    /// Shards in the run, `N`.
    pub count: usize,
}

/// Most shards: more than any deployment needs, and keeps `N * threads` far from overflow.
pub const MAX_SHARDS: usize = 65_536;

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why a `--shard` value (or an end line's shard) is not a shard; each says what works.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShardError {
    /// Not of the form `I/N`.
    #[error("'{0}' is not I/N (e.g. 0/3: the first of three shards)")]
    Syntax(String),
    /// `N` is 0 or more than `MAX_SHARDS` (65,536).
    #[error("'{0}': N must be between 1 and {MAX_SHARDS}")]
    Count(String),
    /// `I` is not below `N`.
    #[error("'{text}': I counts from 0 and must be below N (0/{count} to {}/{count})", count - 1)]
    Index {
        /// The value given.
        text: String,
        /// Its `N`.
        count: usize,
    },
}

impl Shard {
    /// Parses `I/N`, e.g. `0/3`; `N` at most `MAX_SHARDS` (65,536) and `I` below `N`.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let text_owned = || text.to_string();
        let bad = || ShardError::Syntax(text_owned());
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if !(1..=MAX_SHARDS).contains(&count) {
            return Err(ShardError::Count(text_owned()));
        }
        if index >= count {
            return Err(ShardError::Index {
                text: text_owned(),
                count,
            });
        }
        Ok(Shard { index, count })
    }

    /// Whether the run is split at all.
    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }

    /// How many of a run's `connections` this shard owns.
    pub fn owned(&self, connections: usize) -> usize {
        connections.saturating_sub(self.index).div_ceil(self.count)
    }

    /// The global ids thread `thread` of `threads` owns in this shard.
    pub fn lane(&self, thread: usize, threads: usize) -> Lane {
        Lane {
            offset: self.index + thread * self.count,
            stride: self.count * threads,
        }
    }
}

/// The global connection ids `offset, offset + stride, offset + 2*stride, ...` below the
/// run's connection count: what one thread of one shard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// The first id.
    pub offset: usize,
    /// The step between ids; at least 1.
    pub stride: usize,
}

impl Lane {
    /// The whole run on one thread.
    pub const ALL: Lane = Lane {
        offset: 0,
        stride: 1,
    };

    /// Global id of the lane's `i`-th connection.
    pub fn global_id(&self, i: usize) -> usize {
        self.offset + i * self.stride
    }

    /// How many of a run's `connections` the lane holds.
    pub fn len(&self, connections: usize) -> usize {
        connections
            .saturating_sub(self.offset)
            .div_ceil(self.stride)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `I/N` parses; every malformed or out-of-range form is an error naming the rule.
    #[test]
    fn parse_shards() {
        assert_eq!(Shard::parse("0/3"), Ok(Shard { index: 0, count: 3 }));
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        let index = Shard::parse("3/3").unwrap_err();
        assert!(matches!(index, ShardError::Index { count: 3, .. }));
        assert!(index.to_string().contains("below N"), "{index}");
        assert!(matches!(Shard::parse("0/0"), Err(ShardError::Count(_))));
        assert!(matches!(
            Shard::parse("1/999999"),
            Err(ShardError::Count(_))
        ));
        for bad in ["", "1", "a/3", "1/b", "-1/3", "1/3/4", "1.5/3"] {
            assert!(
                matches!(Shard::parse(bad), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
        assert_eq!(Shard::parse("1/4").unwrap().to_string(), "1/4");
        assert!(!Shard::default().is_sharded());
    }

    /// Over every split of a run into shards and threads, the lanes partition the ids
    /// `0..connections`: each id owned exactly once, each shard owning `I, I+N, ...`, and
    /// `owned` and `len` agreeing with the ids listed.
    #[test]
    fn lanes_partition_the_run() {
        for connections in [1usize, 2, 5, 7, 12, 50] {
            for count in 1..=5 {
                let mut seen = vec![0u32; connections];
                for index in 0..count {
                    let shard = Shard { index, count };
                    let owned = shard.owned(connections);
                    let threads = owned.clamp(1, 3);
                    let mut ids = Vec::new();
                    for t in 0..threads {
                        let lane = shard.lane(t, threads);
                        for i in 0..lane.len(connections) {
                            ids.push(lane.global_id(i));
                        }
                    }
                    ids.sort_unstable();
                    let want: Vec<usize> = (index..connections).step_by(count).collect();
                    assert_eq!(ids, want, "{connections} conns, shard {shard}");
                    assert_eq!(owned, want.len());
                    ids.iter().for_each(|&id| seen[id] += 1);
                }
                assert!(seen.iter().all(|&n| n == 1), "{connections}/{count}");
            }
        }
        assert_eq!(Lane::ALL.len(7), 7);
        assert_eq!(Shard { index: 4, count: 5 }.owned(3), 0);
    }
}

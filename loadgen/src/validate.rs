//! The rules about which settings make sense together: [`RunConfig::validate`]. Every
//! error names the flag to change. No IO, so every rule is unit-tested directly.

use std::time::Duration;

use crate::budget::run_bytes;
use crate::config::{
    invalid, ConfigError, Protocol, RunConfig, MAX_BUFFER_BYTES, MAX_CONNECTIONS, MAX_DURATION,
    MAX_PIPELINE, MAX_RATE, MAX_SIZE, MAX_THREADS, MAX_UDP_BATCH,
};
use crate::payload::{HEADER_LEN, MAX_DATAGRAM};
use crate::source::MAX_SOURCES;

impl RunConfig {
    /// Checks ranges and combinations; every error names the flag to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_sizes()?;
        check_duration("duration", self.duration)?;
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be longer than zero"));
        }
        check_duration("warmup", self.warmup)?;
        check_duration("udp-timeout", self.udp_timeout)?;
        if self.protocol == Protocol::Udp && self.udp_timeout.is_zero() {
            return Err(invalid("udp-timeout", "must be greater than 0"));
        }
        check_rate("rate", self.rate)?;
        if self.rate.is_some() && self.pipeline != 1 {
            let why = "cannot be combined with --rate (open loop sends on its schedule; \
                       a pipeline applies to the closed loop only)";
            return Err(invalid("pipeline", why));
        }
        if self.rate.is_some_and(|r| r > MAX_RATE) {
            let why = format!("at most {MAX_RATE:e} messages/s (one per ns)");
            return Err(invalid("rate", why));
        }
        check_rate("connect-rate", self.connect_rate)?;
        // No upper bound: deadlines saturate, and a library caller may mean "never".
        if self.drain_timeout.is_zero() {
            return Err(invalid("drain-timeout", "must be greater than 0"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect-timeout", "must be greater than 0"));
        }
        match (self.reconnect_after, self.protocol) {
            (Some(0), _) => return Err(invalid("reconnect-after", "must be at least 1")),
            (Some(_), Protocol::Udp) => {
                let why = "is for TCP (a UDP socket has no connection to churn)";
                return Err(invalid("reconnect-after", why));
            }
            _ => {}
        }
        if self.bind.len() > MAX_SOURCES {
            let why = format!("at most {} addresses", MAX_SOURCES);
            return Err(invalid("bind", why));
        }
        if let Some(loss) = self.max_loss {
            if !(0.0..=1.0).contains(&loss) {
                return Err(invalid(
                    "max-loss",
                    "must be a fraction 0..1 or a percentage",
                ));
            }
        }
        if self
            .bind
            .iter()
            .any(|ip| ip.is_ipv4() != self.target.is_ipv4())
        {
            return Err(invalid(
                "bind",
                "source and target must both be IPv4 or both IPv6",
            ));
        }
        self.check_budget()
    }

    /// Counts and sizes: each in range, so nothing below allocates without bound.
    fn check_sizes(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            let why = format!("must be between 1 and {MAX_CONNECTIONS}");
            return Err(invalid("connections", why));
        }
        if self.size < HEADER_LEN {
            let why = format!("{} bytes is below the {HEADER_LEN}-byte header", self.size);
            return Err(invalid("size", why));
        }
        let (what, max_size) = match self.protocol {
            Protocol::Udp => ("UDP datagram", MAX_DATAGRAM),
            Protocol::Tcp => ("TCP message", MAX_SIZE),
        };
        if self.size > max_size {
            let why = format!("a {what} holds at most {max_size} bytes");
            return Err(invalid("size", why));
        }
        if !(1..=MAX_UDP_BATCH).contains(&self.udp_batch) {
            let why = format!("must be between 1 and {MAX_UDP_BATCH}");
            return Err(invalid("udp-batch", why));
        }
        if !(1..=MAX_PIPELINE).contains(&self.pipeline) {
            let why = format!("must be between 1 and {MAX_PIPELINE}");
            return Err(invalid("pipeline", why));
        }
        if self.owned() == 0 {
            let why = format!(
                "shard {} of --connections {} owns no connection: use at least {} connections",
                self.shard, self.connections, self.shard.count
            );
            return Err(invalid("shard", why));
        }
        if self.threads == 0 || self.threads > self.owned().min(MAX_THREADS) {
            let why = format!(
                "must be between 1 and the connections this process runs (at most {MAX_THREADS})"
            );
            return Err(invalid("threads", why));
        }
        Ok(())
    }

    /// The buffers of all connections together stay under [`MAX_BUFFER_BYTES`].
    fn check_budget(&self) -> Result<(), ConfigError> {
        let bytes = run_bytes(self);
        if bytes <= MAX_BUFFER_BYTES {
            return Ok(());
        }
        let why = format!(
            "{} connections would need about {} MiB of buffers (at most {} MiB): \
             lower --connections, --pipeline or --size",
            self.connections,
            bytes >> 20,
            MAX_BUFFER_BYTES >> 20
        );
        Err(invalid("connections", why))
    }
}

fn check_rate(flag: &'static str, rate: Option<f64>) -> Result<(), ConfigError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => Err(invalid(flag, "must be a positive number")),
        _ => Ok(()),
    }
}

fn check_duration(flag: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d > MAX_DURATION {
        return Err(invalid(flag, "must be at most 365 days"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::Shard;

    /// Validation names the flag at fault.
    #[test]
    fn validation_names_the_flag() {
        let ok = RunConfig::new("127.0.0.1:1".parse().unwrap());
        assert_eq!(ok.validate(), Ok(()));
        let small = RunConfig {
            size: HEADER_LEN - 1,
            ..ok.clone()
        };
        assert!(matches!(
            small.validate(),
            Err(ConfigError::Invalid { flag: "size", .. })
        ));
        let threads = RunConfig {
            threads: 51,
            ..ok.clone()
        };
        assert!(matches!(
            threads.validate(),
            Err(ConfigError::Invalid {
                flag: "threads",
                ..
            })
        ));
        let rate = RunConfig {
            rate: Some(0.0),
            ..ok.clone()
        };
        assert!(matches!(
            rate.validate(),
            Err(ConfigError::Invalid { flag: "rate", .. })
        ));
        let v6 = RunConfig {
            bind: vec!["::1".parse().unwrap()],
            ..ok
        };
        assert!(matches!(
            v6.validate(),
            Err(ConfigError::Invalid { flag: "bind", .. })
        ));
    }

    /// The flag `validate` names for the defaults changed by `change`, or "ok".
    fn flag_for(change: impl FnOnce(&mut RunConfig)) -> &'static str {
        let mut cfg = RunConfig::new("127.0.0.1:1".parse().unwrap());
        change(&mut cfg);
        match cfg.validate() {
            Err(e) => e.flag(),
            Ok(()) => "ok",
        }
    }

    /// Durations, rates, counts and the buffer budget are bounded, so no setting can panic,
    /// overflow a deadline, spin or allocate without bound; each error names its flag.
    #[test]
    fn limits_name_the_flag() {
        let over = MAX_DURATION + Duration::from_secs(1);
        assert_eq!(flag_for(|c| c.duration = MAX_DURATION), "ok");
        assert_eq!(flag_for(|c| c.duration = over), "duration");
        assert_eq!(flag_for(|c| c.warmup = over), "warmup");
        assert_eq!(flag_for(|c| c.udp_timeout = Duration::MAX), "udp-timeout");
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300, MAX_RATE * 2.0] {
            assert_eq!(flag_for(|c| c.rate = Some(r)), "rate", "{r}");
            let want = if r > 0.0 && r.is_finite() {
                "ok"
            } else {
                "connect-rate"
            };
            assert_eq!(flag_for(|c| c.connect_rate = Some(r)), want, "{r}");
        }
        assert_eq!(flag_for(|c| c.rate = Some(MAX_RATE)), "ok");
        // Open loop has no pipeline; a zero UDP timeout would count every datagram lost.
        assert_eq!(
            flag_for(|c| (c.rate, c.pipeline) = (Some(10.0), 4)),
            "pipeline"
        );
        assert_eq!(flag_for(|c| (c.rate, c.pipeline) = (Some(10.0), 1)), "ok");
        let udp_zero = |c: &mut RunConfig| {
            (c.protocol, c.udp_timeout) = (Protocol::Udp, Duration::ZERO);
        };
        assert_eq!(flag_for(udp_zero), "udp-timeout");
        assert_eq!(
            flag_for(|c| c.connections = MAX_CONNECTIONS + 1),
            "connections"
        );
        assert_eq!(flag_for(|c| c.size = MAX_SIZE + 1), "size");
        let huge_pipeline = |c: &mut RunConfig| {
            (c.pipeline, c.connections) = (u32::MAX as usize, MAX_CONNECTIONS);
        };
        assert_eq!(flag_for(huge_pipeline), "pipeline");
        let threads = |c: &mut RunConfig| (c.threads, c.connections) = (MAX_THREADS + 1, 5000);
        assert_eq!(flag_for(threads), "threads");
        // A shard must own a connection, and its threads share only what it owns.
        let shard =
            |c: &mut RunConfig| (c.shard, c.connections) = (Shard { index: 2, count: 3 }, 2);
        assert_eq!(flag_for(shard), "shard");
        let threads = |c: &mut RunConfig| {
            (c.shard, c.connections, c.threads) = (Shard { index: 2, count: 3 }, 7, 3);
        };
        assert_eq!(flag_for(threads), "threads");
        // Each in range, together too much: the buffer budget names --connections.
        let budget = |c: &mut RunConfig| (c.pipeline, c.connections) = (MAX_PIPELINE, 100_000);
        assert_eq!(flag_for(budget), "connections");
        let open = |c: &mut RunConfig| (c.rate, c.connections) = (Some(MAX_RATE), 1_000_000);
        assert_eq!(flag_for(open), "connections");
        // The most connections fit at the defaults, closed loop and open loop at 1M/s.
        assert_eq!(flag_for(|c| c.connections = MAX_CONNECTIONS), "ok");
        let open = |c: &mut RunConfig| (c.rate, c.connections) = (Some(1e6), MAX_CONNECTIONS);
        assert_eq!(flag_for(open), "ok");
    }
}

//! Files for people and plotting tools: the HdrHistogram percentile distribution (`.hgrm`,
//! the text `outputPercentileDistribution` prints, readable by the HdrHistogram plotter) and
//! a self-contained SVG latency-by-percentile plot. Values are in microseconds.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Percentile ticks per halving of the distance to 100 %, as the Java tool's default.
const TICKS_PER_HALF: u32 = 5;

/// The `.hgrm` text of a ns histogram, values in microseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let us = |ns: u64| ns as f64 / 1000.0;
    let mut total = 0;
    for v in h.iter_quantiles(TICKS_PER_HALF) {
        let (value, q) = (us(v.value_iterated_to()), v.quantile_iterated_to());
        total += v.count_since_last_iteration();
        if q < 1.0 {
            let _ = writeln!(
                t,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(t, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        t,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        t,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        us(h.max()),
        h.len()
    );
    let _ = writeln!(
        t,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h)
    );
    t
}

/// Sub-buckets per bucket, as HdrHistogram sizes them: the power of two that resolves
/// `sigfig` decimal digits (2048 for 3).
fn sub_buckets(h: &Histogram<u64>) -> u64 {
    (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
}

const W: f64 = 800.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
/// Room for half the widest x label ("99.9999%", centred on the last tick).
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// The x axis runs to 99.9999 %: log10(1 / (1 - p)) = 6.
const DECADES: f64 = 6.0;

/// An SVG plot of latency (us, y) by percentile (x, log scale of 1/(1-p) like HdrHistogram's
/// plotter, so the tail gets the room).
pub fn svg(h: &Histogram<u64>, title: &str) -> String {
    let max_us = (h.max() as f64 / 1000.0).max(1.0) * 1.1;
    let x = |q: f64| LEFT + (1.0 / (1.0 - q.min(0.999_999))).log10() / DECADES * (W - LEFT - RIGHT);
    let y = |us: f64| H - BOTTOM - us / max_us * (H - TOP - BOTTOM);
    let mut points = String::new();
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x(v.quantile_iterated_to()),
                y(v.value_iterated_to() as f64 / 1000.0)
            );
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let px = LEFT + i as f64 / DECADES * (W - LEFT - RIGHT);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{}" stroke="#ddd"/>"##,
            H - BOTTOM
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            H - BOTTOM + 18.0
        );
    }
    for i in 0..=5 {
        let us = max_us * f64::from(i) / 5.0;
        let py = y(us);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#ddd"/>"##,
            W - RIGHT
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{us:.0}</text>"#,
            LEFT - 6.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        W / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">latency (us)</text>"#,
        H / 2.0,
        H / 2.0
    );
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
        points.trim_end()
    );
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_histogram;

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap();
        }
        h
    }

    /// The .hgrm has the header, rising percentiles ending at 1.0, and the footer with
    /// the total count, values in microseconds.
    #[test]
    fn hgrm_shape() {
        let text = hgrm(&sample());
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(text.contains("Total count    =        10000]"));
        let rows: Vec<f64> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("Value"))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(rows.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*rows.last().unwrap(), 1.0);
        assert!(text.contains("#[Max     =     1000.",), "{text}");
    }

    /// The last x label, "99.9999%" (about 55 px at 12 px sans-serif), centred on the last
    /// tick, fits inside the image.
    #[test]
    fn last_label_fits() {
        let s = svg(&sample(), "t");
        let at = s.find(">99.9999%<").unwrap();
        let x: f64 = s[..at]
            .rsplit("x=\"")
            .next()
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(x + 30.0 <= W, "label centred at {x}");
    }

    /// The plot is one SVG document with a data line.
    #[test]
    fn svg_shape() {
        let s = svg(&sample(), "a <test>");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt;test&gt;"));
        assert!(s.contains("<polyline") && s.matches(',').count() > 20);
    }
}

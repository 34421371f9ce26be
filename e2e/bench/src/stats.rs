//! Sample summaries and the CSV rows they become.

use std::fmt::Write as _;
use std::time::Duration;

/// Summary of a set of samples (any unit).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median (the mean of the two middle samples for an even count).
    pub median: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarises `xs`; all zero for no samples.
    pub fn of(xs: &[f64]) -> Summary {
        if xs.is_empty() {
            return Summary::default();
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Summary {
            n,
            min: v[0],
            median,
            p95: percentile(&v, 0.95),
            max: v[n - 1],
        }
    }

    /// Summarises durations in seconds.
    pub fn of_durations(ds: &[Duration]) -> Summary {
        Summary::of(&ds.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
    }
}

/// Nearest-rank percentile of sorted `v` (`q` in 0..=1).
fn percentile(v: &[f64], q: f64) -> f64 {
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// One result row: what was measured, for which contender, and its summary.
#[derive(Clone, Debug)]
pub struct Row {
    /// Section id, e.g. `cold_converge`.
    pub section: &'static str,
    /// Metric, e.g. `wall_time`.
    pub metric: String,
    /// Contender, e.g. `berth`, `compose`, `raw`.
    pub contender: String,
    /// Number of containers in the workload.
    pub n: usize,
    /// Unit of the values (`s`, `ms`, `MiB`, `%`, `calls`, `ratio`).
    pub unit: &'static str,
    /// The values.
    pub summary: Summary,
}

/// The CSV text of `rows`, with a header line.
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from("section,metric,contender,n,unit,samples,min,median,p95,max\n");
    for r in rows {
        let m = &r.summary;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{}",
            r.section,
            r.metric,
            r.contender,
            r.n,
            r.unit,
            m.n,
            num(m.min),
            num(m.median),
            num(m.p95),
            num(m.max)
        );
    }
    s
}

fn num(x: f64) -> String {
    format!("{x:.6}")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// Seconds as a short human string with a sensible unit (`812 ms`, `1.52 s`, `45 µs`).
pub fn secs(x: f64) -> String {
    if x < 0.0 {
        return format!("−{}", secs(-x));
    }
    if x >= 10.0 {
        format!("{x:.1} s")
    } else if x >= 1.0 {
        format!("{x:.2} s")
    } else if x >= 0.01 {
        format!("{:.0} ms", x * 1000.0)
    } else if x >= 0.001 {
        format!("{:.1} ms", x * 1000.0)
    } else {
        format!("{:.0} µs", x * 1e6)
    }
}

/// Parses a Rust `Duration` debug string (`1.234ms`, `850µs`, `2.5s`, `120ns`).
pub fn parse_debug_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "µs" | "us" => v / 1e6,
        "ns" => v / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The current UTC time as `YYYY-MM-DD HH:MM` (system clock; no date crate).
pub fn utc_now() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (s / 86_400) as i64;
    let (h, m) = ((s % 86_400) / 3600, (s % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_counts() {
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max, s.p95), (1.0, 2.0, 3.0, 3.0));
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!(s.median, 2.5);
        let xs: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Summary::of(&xs).p95, 19.0);
    }

    #[test]
    fn debug_durations_parse() {
        assert_eq!(
            parse_debug_duration("1.5ms"),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(
            parse_debug_duration("850µs"),
            Some(Duration::from_micros(850))
        );
        assert_eq!(parse_debug_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_debug_duration("abc"), None);
    }

    #[test]
    fn human_seconds() {
        assert_eq!(secs(0.8123), "812 ms");
        assert_eq!(secs(1.523), "1.52 s");
        assert_eq!(secs(0.0042), "4.2 ms");
        assert_eq!(secs(-0.0127), "−13 ms");
    }
}

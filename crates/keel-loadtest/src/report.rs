//! The result of a load test: counts, latency percentiles, SLO verdicts, and
//! its two renderings (a JSON object whose headline metrics are top-level
//! numbers, for gates; a plain-text table for people).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Failures by kind. `http_*` count responses whose status is not 2xx.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorKinds {
    /// The TCP connection could not be opened.
    pub connect: u64,
    /// No complete response within `--timeout`.
    pub timeout: u64,
    /// The connection failed mid-exchange (reset, closed, malformed response).
    pub io: u64,
    /// Open loop only: requests due before the end that were never sent
    /// because every connection was still busy (the target fell behind the
    /// arrival rate).
    pub unsent: u64,
    pub http_1xx: u64,
    pub http_3xx: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
}

impl ErrorKinds {
    pub fn total(&self) -> u64 {
        self.connect
            + self.timeout
            + self.io
            + self.unsent
            + self.http_1xx
            + self.http_3xx
            + self.http_4xx
            + self.http_5xx
    }

    pub(crate) fn add(&mut self, other: &ErrorKinds) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.io += other.io;
        self.unsent += other.unsent;
        self.http_1xx += other.http_1xx;
        self.http_3xx += other.http_3xx;
        self.http_4xx += other.http_4xx;
        self.http_5xx += other.http_5xx;
    }
}

/// Service-level objectives checked against a report.
#[derive(Debug, Clone, Default)]
pub struct Slo {
    /// The 99th-percentile latency must be at most this many milliseconds.
    pub p99_ms: Option<f64>,
    /// The share of failed requests (0..1) must be at most this.
    pub max_error_rate: Option<f64>,
    /// Responses per second must be at least this.
    pub min_rps: Option<f64>,
}

/// One SLO verdict, e.g. `p99_ms <= 25` with the measured value.
#[derive(Debug, Clone, Serialize)]
pub struct SloCheck {
    pub metric: &'static str,
    pub op: &'static str,
    pub limit: f64,
    /// `None` when there was nothing to measure (no response at all); the
    /// check then fails.
    pub value: Option<f64>,
    pub pass: bool,
}

/// Everything a run measured. Only requests started after the warm-up count.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub method: String,
    /// `open-loop` (fixed arrival rate) or `closed-loop` (as fast as possible).
    pub mode: &'static str,
    /// The arrival rate asked for (open loop).
    pub target_rps: Option<f64>,
    pub connections: usize,
    /// Seconds from the end of the warm-up to the last completion.
    pub duration_s: f64,
    /// Requests counted: responses of any status plus failures.
    pub requests: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Everything else (see `error_kinds`).
    pub errors: u64,
    pub error_rate: f64,
    /// HTTP responses (any status) per second.
    pub rps: f64,
    /// Latency percentiles over every HTTP response, in milliseconds. In open
    /// loop, latency runs from the request's scheduled send time whenever the
    /// load generator was behind schedule (coordinated omission corrected).
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Request body bytes sent and response body bytes received.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub error_kinds: ErrorKinds,
    /// Responses by status code.
    pub status_codes: BTreeMap<u16, u64>,
    pub slo: Vec<SloCheck>,
    /// False when any SLO check failed.
    pub pass: bool,
}

/// Raw tallies from the workers, turned into a [`Report`] by [`Report::new`].
pub(crate) struct Tally {
    pub histogram: Histogram<u64>,
    pub status_codes: BTreeMap<u16, u64>,
    pub error_kinds: ErrorKinds,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// How the run was shaped (echoed in the report).
pub(crate) struct Shape {
    pub url: String,
    pub method: String,
    pub target_rps: Option<f64>,
    pub connections: usize,
    pub duration_s: f64,
}

impl Report {
    pub(crate) fn new(shape: Shape, tally: Tally) -> Report {
        let responses: u64 = tally.status_codes.values().sum();
        let ok: u64 = tally
            .status_codes
            .iter()
            .filter(|(code, _)| (200..300).contains(*code))
            .map(|(_, n)| n)
            .sum();
        let errors = tally.error_kinds.total();
        let requests = ok + errors;
        let h = &tally.histogram;
        let ms = |micros: u64| micros as f64 / 1000.0;
        let quantile = |q: f64| (!h.is_empty()).then(|| ms(h.value_at_quantile(q)));
        Report {
            url: shape.url,
            method: shape.method,
            mode: if shape.target_rps.is_some() {
                "open-loop"
            } else {
                "closed-loop"
            },
            target_rps: shape.target_rps,
            connections: shape.connections,
            duration_s: shape.duration_s,
            requests,
            ok,
            errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            rps: if shape.duration_s > 0.0 {
                responses as f64 / shape.duration_s
            } else {
                0.0
            },
            p50_ms: quantile(0.50),
            p90_ms: quantile(0.90),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms: (!h.is_empty()).then(|| ms(h.max())),
            mean_ms: (!h.is_empty()).then(|| h.mean() / 1000.0),
            bytes_sent: tally.bytes_sent,
            bytes_received: tally.bytes_received,
            error_kinds: tally.error_kinds,
            status_codes: tally.status_codes,
            slo: Vec::new(),
            pass: true,
        }
    }

    /// Checks the report against `slo`, recording one verdict per objective
    /// and setting `pass`.
    pub fn apply_slo(&mut self, slo: &Slo) {
        let mut checks = Vec::new();
        if let Some(limit) = slo.p99_ms {
            checks.push(SloCheck {
                metric: "p99_ms",
                op: "<=",
                limit,
                value: self.p99_ms,
                pass: self.p99_ms.is_some_and(|v| v <= limit),
            });
        }
        if let Some(limit) = slo.max_error_rate {
            let value = (self.requests > 0).then_some(self.error_rate);
            checks.push(SloCheck {
                metric: "error_rate",
                op: "<=",
                limit,
                value,
                pass: value.is_some_and(|v| v <= limit),
            });
        }
        if let Some(limit) = slo.min_rps {
            checks.push(SloCheck {
                metric: "rps",
                op: ">=",
                limit,
                value: Some(self.rps),
                pass: self.rps >= limit,
            });
        }
        self.pass = checks.iter().all(|c| c.pass);
        self.slo = checks;
    }

    /// A plain-text summary for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let rate = match self.target_rps {
            Some(target) => format!("open loop at {target} req/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} {} — {}, {} connections, {:.2} s",
            self.method, self.url, rate, self.connections, self.duration_s
        );
        let _ = writeln!(
            out,
            "  requests   {:>12}   ok {}   errors {} ({:.3} %)",
            self.requests,
            self.ok,
            self.errors,
            self.error_rate * 100.0
        );
        let _ = writeln!(out, "  throughput {:>12.1} req/s", self.rps);
        let _ = writeln!(
            out,
            "  latency ms     p50 {}   p90 {}   p99 {}   p99.9 {}   max {}   mean {}",
            opt(self.p50_ms),
            opt(self.p90_ms),
            opt(self.p99_ms),
            opt(self.p999_ms),
            opt(self.max_ms),
            opt(self.mean_ms)
        );
        let _ = writeln!(
            out,
            "  bytes      sent {}   received {}",
            self.bytes_sent, self.bytes_received
        );
        let codes: Vec<String> = self
            .status_codes
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        if !codes.is_empty() {
            let _ = writeln!(out, "  status     {}", codes.join("   "));
        }
        let kinds = &self.error_kinds;
        let failures: Vec<String> = [
            ("connect", kinds.connect),
            ("timeout", kinds.timeout),
            ("io", kinds.io),
            ("unsent", kinds.unsent),
            ("1xx", kinds.http_1xx),
            ("3xx", kinds.http_3xx),
            ("4xx", kinds.http_4xx),
            ("5xx", kinds.http_5xx),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{kind}: {n}"))
        .collect();
        if !failures.is_empty() {
            let _ = writeln!(out, "  errors     {}", failures.join("   "));
        }
        for check in &self.slo {
            let _ = writeln!(
                out,
                "  SLO {} {} {}: {} ({})",
                check.metric,
                check.op,
                check.limit,
                if check.pass { "pass" } else { "FAIL" },
                check
                    .value
                    .map_or_else(|| "no responses".to_owned(), |v| format!("measured {v:.4}"))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(latencies_us: &[u64], codes: &[(u16, u64)], kinds: ErrorKinds) -> Report {
        let mut histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for &v in latencies_us {
            histogram.record(v).unwrap();
        }
        let status_codes: BTreeMap<u16, u64> = codes.iter().copied().collect();
        Report::new(
            Shape {
                url: "http://127.0.0.1/".into(),
                method: "GET".into(),
                target_rps: None,
                connections: 1,
                duration_s: 2.0,
            },
            Tally {
                histogram,
                status_codes,
                error_kinds: kinds,
                bytes_sent: 0,
                bytes_received: 0,
            },
        )
    }

    #[test]
    fn counts_rates_and_percentiles() {
        let latencies: Vec<u64> = (1..=1000).map(|i| i * 10).collect(); // 10 µs .. 10 ms
        let kinds = ErrorKinds {
            http_5xx: 100,
            timeout: 10,
            ..ErrorKinds::default()
        };
        let r = report(&latencies, &[(200, 900), (500, 100)], kinds);
        assert_eq!((r.requests, r.ok, r.errors), (1010, 900, 110));
        assert!((r.error_rate - 110.0 / 1010.0).abs() < 1e-12);
        assert_eq!(r.rps, 500.0);
        let p50 = r.p50_ms.unwrap();
        assert!((p50 - 5.0).abs() < 0.01, "{p50}");
        let p99 = r.p99_ms.unwrap();
        assert!((p99 - 9.9).abs() < 0.01, "{p99}");
        assert!((r.max_ms.unwrap() - 10.0).abs() < 0.01);
    }

    #[test]
    fn slo_verdicts() {
        let mut r = report(
            &[1000; 10],
            &[(200, 9), (503, 1)],
            ErrorKinds {
                http_5xx: 1,
                ..ErrorKinds::default()
            },
        );
        r.apply_slo(&Slo {
            p99_ms: Some(2.0),
            max_error_rate: Some(0.2),
            min_rps: Some(5.0),
        });
        assert!(r.pass, "{:?}", r.slo);
        assert_eq!(r.slo.len(), 3);
        r.apply_slo(&Slo {
            p99_ms: Some(0.5),
            ..Slo::default()
        });
        assert!(!r.pass);
        r.apply_slo(&Slo {
            max_error_rate: Some(0.05),
            ..Slo::default()
        });
        assert!(!r.pass);
        r.apply_slo(&Slo {
            min_rps: Some(6.0),
            ..Slo::default()
        });
        assert!(!r.pass);
        assert!(
            r.to_table().contains("SLO rps >= 6: FAIL"),
            "{}",
            r.to_table()
        );
    }

    #[test]
    fn no_response_fails_latency_and_error_checks() {
        let mut r = report(
            &[],
            &[],
            ErrorKinds {
                connect: 3,
                ..ErrorKinds::default()
            },
        );
        assert_eq!(r.p99_ms, None);
        assert_eq!(r.error_rate, 1.0);
        r.apply_slo(&Slo {
            p99_ms: Some(100.0),
            ..Slo::default()
        });
        assert!(!r.pass);
    }
}

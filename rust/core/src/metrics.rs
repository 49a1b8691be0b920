//! A server's counters for the metrics path (`metrics_path`, opt-in): atomics fed by the accept
//! loop, the handshake and each connection's task, and their rendering in the Prometheus text
//! exposition format 0.0.4. Traffic is not counted here: each `Connection` already counts its
//! own, so a snapshot sums the live connections and adds the totals of those already gone.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::connection::ConnectionStats;

/// Upper bounds (seconds) of the heartbeat RTT histogram's buckets; `+Inf` follows.
pub const RTT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The live counters of one server.
#[derive(Default)]
pub struct Metrics {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    /// Failed TLS handshakes, by [`TlsFailure`].
    tls_failures: [AtomicU64; TlsFailure::ALL.len()],
    /// Connections closed over their PROXY protocol header, by [`ProxyFailure`].
    proxy_header_failures: [AtomicU64; ProxyFailure::ALL.len()],
    /// Non-cumulative counts per bucket, the last one for `+Inf`.
    rtt_buckets: [AtomicU64; RTT_BUCKETS.len() + 1],
    rtt_sum_us: AtomicU64,
    rtt_count: AtomicU64,
    ended: Mutex<Ended>,
}

/// Why a connection was closed over its PROXY protocol header (`proxy_protocol`), the label
/// `cause` of `proxy_header_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyFailure {
    /// A header from an address not in `trusted_proxies`, or with `proxy_protocol` off.
    Untrusted,
    /// A trusted proxy's connection without one.
    Missing,
    /// A broken header (bad version, address, length; cut short) or a read error.
    Malformed,
    /// Not complete within `handshake_timeout`.
    Timeout,
}

impl ProxyFailure {
    pub const ALL: [ProxyFailure; 4] = [
        ProxyFailure::Untrusted,
        ProxyFailure::Missing,
        ProxyFailure::Malformed,
        ProxyFailure::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProxyFailure::Untrusted => "untrusted",
            ProxyFailure::Missing => "missing",
            ProxyFailure::Malformed => "malformed",
            ProxyFailure::Timeout => "timeout",
        }
    }
}

/// Why a TLS handshake failed (`wss://`), the label `cause` of `tls_failures_total`: what
/// rustls tells apart without any work of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// Bytes that are not TLS records: plain HTTP (`ws://`) on a `wss://` port, garbage.
    NotTls,
    /// The client refused our certificate (its alert: unknown CA, bad or expired
    /// certificate...): a chain or name the players' clients do not trust.
    CertificateRejected,
    /// Not complete within `handshake_timeout` (or not begun: a silent socket).
    Timeout,
    /// The client closed or reset the connection before the end (a TCP probe, a client
    /// giving up).
    Closed,
    /// Anything else: no common protocol version or cipher suite, a broken handshake.
    Other,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::NotTls,
        TlsFailure::CertificateRejected,
        TlsFailure::Timeout,
        TlsFailure::Closed,
        TlsFailure::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::NotTls => "not_tls",
            TlsFailure::CertificateRejected => "certificate_rejected",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::Other => "other",
        }
    }
}

/// What the connections already gone leave behind.
#[derive(Default)]
struct Ended {
    traffic: ConnectionStats,
    /// Close code (-1: not a clean close) to how many connections ended with it.
    codes: BTreeMap<i32, u64>,
}

impl Metrics {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_proxy_failure(&self, cause: ProxyFailure) {
        Metrics::count(&self.proxy_header_failures[cause as usize]);
    }

    pub(crate) fn count_tls_failure(&self, cause: TlsFailure) {
        Metrics::count(&self.tls_failures[cause as usize]);
    }

    /// One heartbeat round trip, in microseconds.
    pub(crate) fn observe_rtt(&self, us: u64) {
        let secs = us as f64 / 1e6;
        let i = RTT_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(RTT_BUCKETS.len());
        self.rtt_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.rtt_sum_us.fetch_add(us, Ordering::Relaxed);
        self.rtt_count.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended: its traffic and close code move into the totals.
    pub(crate) fn connection_ended(&self, traffic: &ConnectionStats, close_code: i32) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.traffic.add(traffic);
        *ended.codes.entry(close_code).or_default() += 1;
    }

    /// The counters now, with what the live connections report (`live`: each one's traffic
    /// and queued bytes).
    pub(crate) fn snapshot(&self, live: impl Iterator<Item = (ConnectionStats, u64)>) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let mut traffic = ended.traffic;
        let (mut peers, mut queued_bytes) = (0, 0);
        for (stats, queued) in live {
            traffic.add(&stats);
            peers += 1;
            queued_bytes += queued;
        }
        Snapshot {
            peers,
            accepted: load(&self.accepted),
            refused: load(&self.refused),
            rejected: load(&self.rejected),
            handshake_failures: load(&self.handshake_failures),
            tls_failures: std::array::from_fn(|i| load(&self.tls_failures[i])),
            proxy_header_failures: std::array::from_fn(|i| load(&self.proxy_header_failures[i])),
            traffic,
            queued_bytes,
            close_codes: ended.codes.clone(),
            rtt_buckets: std::array::from_fn(|i| load(&self.rtt_buckets[i])),
            rtt_sum_us: load(&self.rtt_sum_us),
            rtt_count: load(&self.rtt_count),
        }
    }
}

/// The counters at one moment, as rendered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub peers: u64,
    pub accepted: u64,
    pub refused: u64,
    pub rejected: u64,
    pub handshake_failures: u64,
    /// Indexed by [`TlsFailure`].
    pub tls_failures: [u64; TlsFailure::ALL.len()],
    /// Indexed by [`ProxyFailure`].
    pub proxy_header_failures: [u64; ProxyFailure::ALL.len()],
    pub traffic: ConnectionStats,
    pub queued_bytes: u64,
    pub close_codes: BTreeMap<i32, u64>,
    pub rtt_buckets: [u64; RTT_BUCKETS.len() + 1],
    pub rtt_sum_us: u64,
    pub rtt_count: u64,
}

/// The name prefix of every metric.
const PREFIX: &str = "rust_websocket";

/// `s` in the Prometheus text exposition format 0.0.4.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        // In the 0.0.4 format a counter is declared by its sample's name, `_total` included
        // (parsers file `_total` samples under a family without it as untyped).
        let declared = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        let _ = writeln!(out, "# HELP {PREFIX}_{declared} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}_{declared} {kind}");
        for (suffix, value) in samples {
            let _ = writeln!(out, "{PREFIX}_{name}{suffix} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    family("peers", "gauge", "Connected peers.", &one(s.peers));
    let counters: [(&str, &str, u64); 8] = [
        ("connections_accepted", "Connections that became peers.", s.accepted),
        ("connections_refused", "Connections refused before their handshake (refuse_new_connections, too many handshakes from one address).", s.refused),
        ("connections_rejected", "Connections rejected by the handshake handler.", s.rejected),
        ("handshake_failures", "Handshakes that failed: bad request, timeout, failed upgrade.", s.handshake_failures),
        ("received_bytes", "Payload bytes received.", s.traffic.bytes_in),
        ("sent_bytes", "Payload bytes sent.", s.traffic.bytes_out),
        ("received_messages", "Messages received.", s.traffic.packets_in),
        ("sent_messages", "Messages sent.", s.traffic.packets_out),
    ];
    for (name, help, value) in counters {
        family(name, "counter", help, &[("_total".into(), value)]);
    }
    let by_cause = |label: &str, n: u64| (format!("_total{{cause=\"{label}\"}}"), n);
    let causes: Vec<(String, u64)> = TlsFailure::ALL
        .iter()
        .map(|c| by_cause(c.label(), s.tls_failures[*c as usize]))
        .collect();
    family(
        "tls_failures",
        "counter",
        "TLS handshakes that failed, by cause: not_tls (bytes that are not TLS, e.g. ws:// on a wss:// port), certificate_rejected (the client refused the certificate), timeout, closed (by the client, before the end), other.",
        &causes,
    );
    let causes: Vec<(String, u64)> = ProxyFailure::ALL
        .iter()
        .map(|c| by_cause(c.label(), s.proxy_header_failures[*c as usize]))
        .collect();
    family(
        "proxy_header_failures",
        "counter",
        "Connections closed over their PROXY protocol header, by cause: untrusted (a header from an address not in trusted_proxies), missing, malformed, timeout.",
        &causes,
    );
    family(
        "queued_bytes",
        "gauge",
        "Payload bytes queued towards peers, not yet written to their sockets.",
        &one(s.queued_bytes),
    );
    let codes: Vec<(String, u64)> = s
        .close_codes
        .iter()
        .map(|(code, n)| (format!("_total{{code=\"{code}\"}}"), *n))
        .collect();
    family(
        "closes",
        "counter",
        "Connections ended, by close code (-1: not a clean close).",
        &codes,
    );
    let mut buckets = Vec::with_capacity(RTT_BUCKETS.len() + 3);
    let mut cumulative = 0;
    for (i, n) in s.rtt_buckets.iter().enumerate() {
        cumulative += n;
        let le = RTT_BUCKETS
            .get(i)
            .map_or("+Inf".into(), |le| le.to_string());
        buckets.push((format!("_bucket{{le=\"{le}\"}}"), cumulative));
    }
    let mut out_hist = String::new();
    let name = format!("{PREFIX}_heartbeat_rtt_seconds");
    let _ = writeln!(out_hist, "# HELP {name} Heartbeat ping to pong round trip.");
    let _ = writeln!(out_hist, "# TYPE {name} histogram");
    for (suffix, value) in buckets {
        let _ = writeln!(out_hist, "{name}{suffix} {value}");
    }
    let _ = writeln!(out_hist, "{name}_sum {}", s.rtt_sum_us as f64 / 1e6);
    let _ = writeln!(out_hist, "{name}_count {}", s.rtt_count);
    out.push_str(&out_hist);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_buckets_and_totals() {
        let m = Metrics::default();
        m.observe_rtt(300); // 0.0003 s: first bucket
        m.observe_rtt(1_000); // exactly 0.001: its bucket (le is inclusive)
        m.observe_rtt(10_000_000); // 10 s: +Inf
        Metrics::count(&m.accepted);
        m.count_proxy_failure(ProxyFailure::Timeout);
        m.count_tls_failure(TlsFailure::CertificateRejected);
        m.count_tls_failure(TlsFailure::CertificateRejected);
        m.connection_ended(
            &ConnectionStats {
                bytes_in: 5,
                packets_in: 1,
                ..Default::default()
            },
            1000,
        );
        m.connection_ended(&ConnectionStats::default(), -1);
        let live = ConnectionStats {
            bytes_in: 7,
            bytes_out: 3,
            packets_in: 2,
            packets_out: 1,
            ..ConnectionStats::default()
        };
        let s = m.snapshot([(live, 11)].into_iter());
        assert_eq!(s.peers, 1);
        assert_eq!(s.accepted, 1);
        assert_eq!(s.proxy_header_failures, [0, 0, 0, 1]);
        assert_eq!(s.tls_failures, [0, 2, 0, 0, 0]);
        assert_eq!(s.traffic.bytes_in, 12);
        assert_eq!(s.traffic.packets_in, 3);
        assert_eq!(s.queued_bytes, 11);
        assert_eq!(s.close_codes, BTreeMap::from([(-1, 1), (1000, 1)]));
        assert_eq!(s.rtt_buckets[0], 1);
        assert_eq!(s.rtt_buckets[1], 1);
        assert_eq!(s.rtt_buckets[RTT_BUCKETS.len()], 1);
        assert_eq!(s.rtt_count, 3);
        assert_eq!(s.rtt_sum_us, 10_001_300);
    }

    #[test]
    fn text_format() {
        let mut s = Snapshot {
            peers: 2,
            accepted: 3,
            close_codes: BTreeMap::from([(1000, 4)]),
            rtt_sum_us: 1_500,
            rtt_count: 2,
            ..Default::default()
        };
        s.traffic.bytes_in = 42;
        s.rtt_buckets[1] = 2;
        s.proxy_header_failures[ProxyFailure::Malformed as usize] = 5;
        s.tls_failures[TlsFailure::NotTls as usize] = 6;
        let text = render(&s);
        for line in [
            "# TYPE rust_websocket_peers gauge\nrust_websocket_peers 2\n",
            "# TYPE rust_websocket_connections_accepted_total counter\nrust_websocket_connections_accepted_total 3\n",
            "# TYPE rust_websocket_closes_total counter\n",
            "rust_websocket_received_bytes_total 42\n",
            "rust_websocket_closes_total{code=\"1000\"} 4\n",
            "rust_websocket_proxy_header_failures_total{cause=\"malformed\"} 5\n",
            "rust_websocket_proxy_header_failures_total{cause=\"timeout\"} 0\n",
            "# TYPE rust_websocket_tls_failures_total counter\n",
            "rust_websocket_tls_failures_total{cause=\"not_tls\"} 6\n",
            "rust_websocket_tls_failures_total{cause=\"certificate_rejected\"} 0\n",
            "rust_websocket_tls_failures_total{cause=\"other\"} 0\n",
            "# TYPE rust_websocket_heartbeat_rtt_seconds histogram\n",
            "rust_websocket_heartbeat_rtt_seconds_bucket{le=\"0.0005\"} 0\n",
            "rust_websocket_heartbeat_rtt_seconds_bucket{le=\"0.001\"} 2\n",
            "rust_websocket_heartbeat_rtt_seconds_bucket{le=\"2.5\"} 2\n",
            "rust_websocket_heartbeat_rtt_seconds_bucket{le=\"+Inf\"} 2\n",
            "rust_websocket_heartbeat_rtt_seconds_sum 0.0015\n",
            "rust_websocket_heartbeat_rtt_seconds_count 2\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        // Every family has HELP then TYPE, and each line ends with a newline.
        assert_eq!(
            text.matches("# HELP").count(),
            text.matches("# TYPE").count()
        );
        assert!(text.ends_with('\n'));
    }
}

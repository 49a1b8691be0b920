//! Traffic numbers of a `RustWebSocketMultiplayerPeer`: `get_peer_stats()`, `get_stats()` and
//! the Godot Performance monitors of `add_performance_monitors()`, apart from the class so that
//! its file reads as the API.

use std::collections::HashMap;
use std::time::Instant;

use godot::classes::Performance;
use godot::global::Error;
use godot::prelude::*;
use rust_websocket_core::connection::{Connection, ConnectionStats};

use super::RustWebSocketMultiplayerPeer;

/// Monitor names, as registered under the category by add_performance_monitors().
const MONITORS: [&str; 7] = [
    "peers",
    "bytes_in_per_s",
    "bytes_out_per_s",
    "packets_in_per_s",
    "packets_out_per_s",
    "queued_bytes_out",
    "rtt_ms",
];

/// The monitors registered by one peer, and what turns their counters into rates.
#[derive(Default)]
pub(super) struct Monitors {
    /// Performance monitor ids registered by add_performance_monitors().
    ids: Vec<StringName>,
    /// Last (time, counter) seen per rate monitor, to turn totals into per-second rates.
    samples: HashMap<String, (Instant, u64)>,
}

fn put<V: ToGodot>(d: &mut VarDictionary, key: &str, value: V) {
    d.set(&key.to_variant(), &value.to_variant());
}

/// What `get_peer_stats(id)` returns for one connection.
pub(super) fn peer_stats(conn: &Connection) -> VarDictionary {
    let mut d = VarDictionary::new();
    let s = conn.stats();
    put(&mut d, "bytes_in", s.bytes_in as i64);
    put(&mut d, "bytes_out", s.bytes_out as i64);
    put(&mut d, "wire_bytes_in", s.wire_bytes_in as i64);
    put(&mut d, "wire_bytes_out", s.wire_bytes_out as i64);
    put(&mut d, "packets_in", s.packets_in as i64);
    put(&mut d, "packets_out", s.packets_out as i64);
    put(&mut d, "queued_packets_out", conn.outbound_queued() as i64);
    put(&mut d, "queued_bytes_out", conn.outbound_buffered() as i64);
    put(
        &mut d,
        "rtt_ms",
        conn.rtt().map_or(-1.0, |r| r.as_secs_f64() * 1000.0),
    );
    put(&mut d, "connected_since_unix_ms", s.opened_unix_ms as i64);
    d
}

impl RustWebSocketMultiplayerPeer {
    /// Traffic since create_* (departed peers included) and what is queued out now
    /// (packets, bytes): what get_stats() and the monitors report.
    fn totals(&self) -> (ConnectionStats, usize, usize) {
        let mut t = self.closed_totals;
        let (mut queued_packets, mut queued_bytes) = (0usize, 0usize);
        for entry in self.peers.values() {
            t.add(&entry.conn.stats());
            queued_packets += entry.conn.outbound_queued();
            queued_bytes += entry.conn.outbound_buffered();
        }
        (t, queued_packets, queued_bytes)
    }

    /// What `get_stats()` returns.
    pub(super) fn stats(&self) -> VarDictionary {
        let (t, queued_packets, queued_bytes) = self.totals();
        let mut d = VarDictionary::new();
        put(&mut d, "peer_count", self.peers.len() as i64);
        put(&mut d, "bytes_in", t.bytes_in as i64);
        put(&mut d, "bytes_out", t.bytes_out as i64);
        put(&mut d, "wire_bytes_in", t.wire_bytes_in as i64);
        put(&mut d, "wire_bytes_out", t.wire_bytes_out as i64);
        put(&mut d, "packets_in", t.packets_in as i64);
        put(&mut d, "packets_out", t.packets_out as i64);
        put(&mut d, "queued_packets_out", queued_packets as i64);
        put(&mut d, "queued_bytes_out", queued_bytes as i64);
        d
    }

    /// `add_performance_monitors(category)`.
    pub(super) fn add_monitors(&mut self, category: &GString) -> Error {
        let mut perf = Performance::singleton();
        let ids: Vec<(StringName, &str)> = MONITORS
            .iter()
            .map(|name| (StringName::from(&format!("{category}/{name}")), *name))
            .collect();
        if let Some((taken, _)) = ids.iter().find(|(id, _)| perf.has_custom_monitor(id)) {
            godot_error!("add_performance_monitors: a monitor '{taken}' already exists");
            return Error::ERR_ALREADY_IN_USE;
        }
        self.remove_monitors();
        let callable = Callable::from_object_method(&self.to_gd(), "get_monitor");
        for (id, name) in ids {
            let args = varray![name];
            perf.add_custom_monitor_ex(&id, &callable)
                .arguments(&args)
                .done();
            self.monitors.ids.push(id);
        }
        Error::OK
    }

    /// `remove_performance_monitors()`, also run when the peer is freed.
    pub(super) fn remove_monitors(&mut self) {
        if self.monitors.ids.is_empty() {
            return;
        }
        let mut perf = Performance::singleton();
        for id in self.monitors.ids.drain(..) {
            if perf.has_custom_monitor(&id) {
                perf.remove_custom_monitor(&id);
            }
        }
    }

    /// `get_monitor(name)`: the value behind one monitor; rates are per second since the
    /// previous call for the same name.
    pub(super) fn monitor(&mut self, name: String) -> f64 {
        let (totals, _, queued_bytes) = self.totals();
        let counter = match name.as_str() {
            "peers" => return self.peers.len() as f64,
            "queued_bytes_out" => return queued_bytes as f64,
            "rtt_ms" => {
                let rtts: Vec<f64> = self
                    .peers
                    .values()
                    .filter_map(|e| e.conn.rtt())
                    .map(|r| r.as_secs_f64() * 1000.0)
                    .collect();
                return if rtts.is_empty() {
                    0.0
                } else {
                    rtts.iter().sum::<f64>() / rtts.len() as f64
                };
            }
            "bytes_in_per_s" => totals.bytes_in,
            "bytes_out_per_s" => totals.bytes_out,
            "packets_in_per_s" => totals.packets_in,
            "packets_out_per_s" => totals.packets_out,
            _ => {
                godot_error!("get_monitor: unknown monitor '{name}'");
                return 0.0;
            }
        };
        let now = Instant::now();
        let previous = self.monitors.samples.insert(name, (now, counter));
        match previous {
            Some((then, before)) if now > then && counter >= before => {
                (counter - before) as f64 / (now - then).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

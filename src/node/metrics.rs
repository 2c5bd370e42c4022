//! `/metrics`: counters in Prometheus text format. Plain atomics and one small map; no
//! metrics crate is needed for a handful of counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::carte::CarteError;
use crate::ledger::mirror::MirrorStatus;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    cartes: Mutex<BTreeMap<&'static str, u64>>,
    carte_cache_hits: AtomicU64,
    grant_changes: AtomicU64,
    notifications: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts a request by route (a fixed label, never the raw path) and status.
    pub fn request(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, status))
            .or_default() += 1;
    }

    pub fn carte_verified(&self, error: Option<&CarteError>) {
        let result = error.map(CarteError::code).unwrap_or("ok");
        *self
            .cartes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(result)
            .or_default() += 1;
    }

    pub fn carte_cache_hit(&self) {
        self.carte_cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a notification delivery attempt by result: `delivered`, `failed` (retried),
    /// `refused` (the target's address is not allowed) or `given-up`.
    pub fn notification(&self, result: &'static str) {
        *self
            .notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(result)
            .or_default() += 1;
    }

    pub fn grant_changed(&self) {
        self.grant_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, mirror: &MirrorStatus, cache_len: usize, outbox: u64) -> String {
        let mut out = String::new();
        out.push_str("# TYPE grant_node_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "grant_node_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# TYPE grant_node_carte_verifications_total counter\n");
        for (result, n) in self.cartes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "grant_node_carte_verifications_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE grant_node_carte_cache_hits_total counter\ngrant_node_carte_cache_hits_total {}",
            self.carte_cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE grant_node_carte_cache_entries gauge\ngrant_node_carte_cache_entries {cache_len}"
        );
        let _ = writeln!(
            out,
            "# TYPE grant_node_grant_changes_total counter\ngrant_node_grant_changes_total {}",
            self.grant_changes.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE grant_node_notifications_total counter\n");
        for (result, n) in self
            .notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "grant_node_notifications_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE grant_node_outbox_pending gauge\ngrant_node_outbox_pending {outbox}"
        );
        let _ = writeln!(
            out,
            "# TYPE grant_node_registry_sync_lag_entries gauge\ngrant_node_registry_sync_lag_entries {}",
            mirror.registry_size.saturating_sub(mirror.size)
        );
        let _ = writeln!(
            out,
            "# TYPE grant_node_registry_degraded gauge\ngrant_node_registry_degraded {}",
            u8::from(mirror.degraded.is_some())
        );
        out
    }
}

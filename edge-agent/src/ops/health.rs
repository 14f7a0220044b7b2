//! Liveness of the agent's parts, as `/healthz` reports it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One part's state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Component {
    pub healthy: bool,
    /// Why it is unhealthy (or a short status when healthy).
    pub detail: String,
    pub since: DateTime<Utc>,
}

/// Shared, cheap to clone. Each part (a camera, the pre-screen, the outbox)
/// reports under its own name; the agent is healthy when every part is.
#[derive(Debug, Clone, Default)]
pub struct Health {
    parts: Arc<Mutex<BTreeMap<String, Component>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a part's state; `since` changes only when health flips.
    pub fn set(&self, part: &str, healthy: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let since = match parts.get(part) {
            Some(c) if c.healthy == healthy => c.since,
            _ => Utc::now(),
        };
        parts.insert(
            part.to_owned(),
            Component {
                healthy,
                detail,
                since,
            },
        );
    }

    /// Forgets a part (e.g. a camera removed by a reload).
    pub fn remove(&self, part: &str) {
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(part);
    }

    /// Overall health and every part's state.
    pub fn snapshot(&self) -> (bool, BTreeMap<String, Component>) {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let healthy = parts.values().all(|c| c.healthy);
        (healthy, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_every_part_is() {
        let h = Health::new();
        assert!(h.snapshot().0, "no parts yet: nothing is wrong");
        h.set("camera:front", true, "streaming");
        h.set("outbox", false, "disk full");
        assert!(!h.snapshot().0);
        let since = h.snapshot().1["outbox"].since;
        h.set("outbox", false, "still full");
        assert_eq!(
            h.snapshot().1["outbox"].since,
            since,
            "since moves only on a flip"
        );
        h.set("outbox", true, "ok");
        assert!(h.snapshot().0);
        h.remove("outbox");
        assert_eq!(h.snapshot().1.len(), 1);
    }
}

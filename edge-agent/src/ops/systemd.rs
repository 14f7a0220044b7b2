//! systemd integration (`Type=notify` with `WatchdogSec=`): readiness,
//! stopping, and watchdog pings that stop when the pipeline stops moving.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

/// Tells systemd the agent is up (after the outbox opened and the model loaded).
pub fn notify_ready() {
    if let Err(error) = sd_notify::notify(false, &[NotifyState::Ready]) {
        tracing::warn!(%error, "cannot notify systemd of readiness");
    }
}

/// Tells systemd a clean shutdown has begun, so a slow drain is not a hang.
pub fn notify_stopping() {
    if let Err(error) = sd_notify::notify(false, &[NotifyState::Stopping]) {
        tracing::warn!(%error, "cannot notify systemd of stopping");
    }
}

/// A timestamp the pipeline bumps whenever it makes progress (each session
/// tick). The watchdog pings only while it is fresh, so a wedged pipeline is
/// restarted by systemd rather than kept alive by an idle timer task.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    pub fn beat(&self) {
        self.0
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Milliseconds since the last beat (`i64::MAX` before the first).
    pub fn age_ms(&self) -> i64 {
        match self.0.load(Ordering::Relaxed) {
            0 => i64::MAX,
            last => chrono::Utc::now().timestamp_millis() - last,
        }
    }
}

/// Pings the systemd watchdog at half its interval while `heartbeat` is
/// younger than the interval; returns at once when no watchdog is set.
pub async fn run_watchdog(heartbeat: Heartbeat, mut shutdown: watch::Receiver<bool>) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let interval = Duration::from_micros(usec);
    let limit_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let mut ticker = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if heartbeat.age_ms() < limit_ms {
                    if let Err(error) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                        tracing::warn!(%error, "cannot ping the systemd watchdog");
                    }
                } else {
                    tracing::error!(
                        age_ms = heartbeat.age_ms(),
                        "pipeline made no progress for a watchdog interval; not pinging"
                    );
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

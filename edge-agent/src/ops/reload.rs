//! Configuration reload on SIGHUP: the new file is validated whole, and an
//! invalid one is refused while the running configuration stays in force.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use inspection_core::config::ConfigErrors;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `edge_config_reloads_total{result="applied"|"rejected"}`.
#[derive(Debug, Clone, Default)]
pub struct ReloadMetrics {
    reloads: Family<ResultLabel, Counter>,
}

impl ReloadMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_config_reloads",
            "Configuration reloads (SIGHUP), by result",
            self.reloads.clone(),
        );
    }

    /// How many reloads had `result` (`applied` or `rejected`).
    pub fn count(&self, result: &'static str) -> u64 {
        self.reloads.get_or_create(&ResultLabel { result }).get()
    }
}

/// What one reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Applied,
    Rejected(ConfigErrors),
}

/// Holds the running configuration and swaps it when a valid one arrives.
pub struct Reloader<C> {
    load: Box<dyn Fn() -> Result<C, ConfigErrors> + Send + Sync>,
    current: watch::Sender<Arc<C>>,
    metrics: ReloadMetrics,
}

impl<C: Send + Sync + 'static> Reloader<C> {
    /// `load` reads and validates the configuration file.
    pub fn new(
        initial: C,
        load: impl Fn() -> Result<C, ConfigErrors> + Send + Sync + 'static,
        metrics: ReloadMetrics,
    ) -> Self {
        let (current, _) = watch::channel(Arc::new(initial));
        Self {
            load: Box::new(load),
            current,
            metrics,
        }
    }

    /// A receiver that sees every applied configuration.
    pub fn subscribe(&self) -> watch::Receiver<Arc<C>> {
        self.current.subscribe()
    }

    /// Loads the file again; applies it only when it is valid.
    pub fn reload(&self) -> ReloadOutcome {
        match (self.load)() {
            Ok(config) => {
                self.current.send_replace(Arc::new(config));
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel { result: "applied" })
                    .inc();
                tracing::info!("configuration reloaded");
                ReloadOutcome::Applied
            }
            Err(errors) => {
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel { result: "rejected" })
                    .inc();
                tracing::error!(
                    problems = ?errors.0,
                    "new configuration is invalid; keeping the running one"
                );
                ReloadOutcome::Rejected(errors)
            }
        }
    }

    /// Reloads on every SIGHUP until `shutdown` fires.
    pub async fn run_on_sighup(self, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = hup.recv() => { self.reload(); }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn an_invalid_file_keeps_the_running_configuration() {
        let file = Arc::new(Mutex::new(Ok::<u32, ConfigErrors>(2)));
        let source = file.clone();
        let metrics = ReloadMetrics::default();
        let reloader = Reloader::new(
            1u32,
            move || source.lock().unwrap().clone(),
            metrics.clone(),
        );
        let rx = reloader.subscribe();
        assert!(matches!(reloader.reload(), ReloadOutcome::Applied));
        assert_eq!(**rx.borrow(), 2);

        *file.lock().unwrap() = Err(ConfigErrors(vec!["quality.min_sharpness: -1".into()]));
        assert!(matches!(reloader.reload(), ReloadOutcome::Rejected(_)));
        assert_eq!(**rx.borrow(), 2, "the running configuration stays");
        assert_eq!(metrics.count("applied"), 1);
        assert_eq!(metrics.count("rejected"), 1);
    }
}

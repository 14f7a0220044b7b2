//! Retention: how long each class of data is kept, and the scheduled purge
//! that enforces it (run by the `api` role).
//!
//! ```toml
//! [retention]
//! images_days = 90       # frames in the object store
//! reports_days = 730     # report texts
//! findings_days = 730    # inspections whole: events, frames, findings, plate reads, reviews
//! audit_days = 2555      # the audit log (7 years)
//! interval_minutes = 60
//! batch = 500
//! ```
//!
//! A class without a number is kept for ever (the default: deleting is the
//! operator's decision). Ages count from the inspection's start (audit
//! entries from their own time). Images of an inspection with an approved
//! charge are evidence: they are kept until the inspection itself goes.
//! Each purge deletes in batches (one transaction each, with its audit entry
//! `retention.purge`), so a backlog after a configuration change is worked
//! off without long locks. Purging twice is harmless: several api replicas
//! may run it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use inspection_core::wire::Sha256Hex;
use object_store::{ObjectStore, ObjectStoreExt as _};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::watch;

use crate::store::{DataClass, ImageRef, Store};
use crate::upload::object_key;

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub images_days: Option<u32>,
    pub reports_days: Option<u32>,
    pub findings_days: Option<u32>,
    pub audit_days: Option<u32>,
    /// Minutes between two purges.
    pub interval_minutes: u32,
    /// Rows (or images) per transaction.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            images_days: None,
            reports_days: None,
            findings_days: None,
            audit_days: None,
            interval_minutes: 60,
            batch: 500,
        }
    }
}

/// At most this many batches of one class per run: the next run goes on.
const MAX_BATCHES: u32 = 200;

impl RetentionConfig {
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (name, days) in self.rules() {
            if days == 0 {
                out.push(format!(
                    "{at}.{name}_days: at least 1 (leave it out to keep for ever)"
                ));
            }
        }
        if let Some(findings) = self.findings_days {
            for (name, days) in [("images", self.images_days), ("reports", self.reports_days)] {
                if days.is_some_and(|d| d > findings) {
                    out.push(format!(
                        "{at}.{name}_days: longer than findings_days ({findings}); they go with their inspection"
                    ));
                }
            }
        }
        if !(1..=1440).contains(&self.interval_minutes) {
            out.push(format!("{at}.interval_minutes: 1 to 1440"));
        }
        if !(1..=10_000).contains(&self.batch) {
            out.push(format!("{at}.batch: 1 to 10000"));
        }
        out
    }

    /// The classes with a limit, by name.
    fn rules(&self) -> Vec<(&'static str, u32)> {
        [
            ("images", self.images_days),
            ("reports", self.reports_days),
            ("findings", self.findings_days),
            ("audit", self.audit_days),
        ]
        .into_iter()
        .filter_map(|(n, d)| d.map(|d| (n, d)))
        .collect()
    }

    /// Whether anything is ever purged.
    pub fn is_active(&self) -> bool {
        !self.rules().is_empty()
    }

    fn days(&self, class: DataClass) -> Option<u32> {
        match class {
            DataClass::Images => self.images_days,
            DataClass::Reports => self.reports_days,
            DataClass::Findings => self.findings_days,
            DataClass::Audit => self.audit_days,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

/// `central_retention_*`; clones share values.
#[derive(Clone, Debug, Default)]
pub struct RetentionMetrics {
    purged: Family<ClassLabels, Counter>,
    errors: Family<ClassLabels, Counter>,
    last_success: Gauge,
}

impl RetentionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_retention_purged",
            "Rows (images: objects) deleted by the retention purge, by data class",
            self.purged.clone(),
        );
        registry.register(
            "central_retention_errors",
            "Retention purges of a class that failed (retried at the next run)",
            self.errors.clone(),
        );
        registry.register(
            "central_retention_last_success_timestamp_seconds",
            "When a retention run last finished without an error (Unix time)",
            self.last_success.clone(),
        );
    }

    /// For tests: purged count of a class.
    pub fn purged(&self, class: DataClass) -> u64 {
        self.purged
            .get_or_create(&ClassLabels {
                class: class.as_str(),
            })
            .get()
    }

    /// For tests: failed runs of a class.
    pub fn errors(&self, class: DataClass) -> u64 {
        self.errors
            .get_or_create(&ClassLabels {
                class: class.as_str(),
            })
            .get()
    }
}

/// What one run deleted, by class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    pub images: u64,
    pub reports: u64,
    pub findings: u64,
    pub audit: u64,
    /// `class: error` for each class that failed.
    pub errors: Vec<String>,
}

/// Deletes stored images; `Ok` for those already gone. The deleted (or
/// already absent) SHA-256s, and the first error, which stops the rest.
pub async fn delete_images(
    images: &dyn ObjectStore,
    shas: Vec<String>,
) -> (BTreeSet<String>, Option<String>) {
    let mut done = BTreeSet::new();
    for sha in shas {
        if done.contains(&sha) {
            continue;
        }
        let Ok(hex) = Sha256Hex::new(sha.clone()) else {
            // Not an image the upload role could have stored.
            done.insert(sha);
            continue;
        };
        match images.delete(&object_key(&hex)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                done.insert(sha);
            }
            Err(e) => return (done, Some(format!("deleting image {sha}: {e}"))),
        }
    }
    (done, None)
}

async fn purge_images(
    store: &dyn Store,
    images: &dyn ObjectStore,
    before: DateTime<Utc>,
    include_charged: bool,
    batch: u32,
    at: DateTime<Utc>,
) -> Result<(u64, bool), String> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let refs = store
            .expired_images(before, batch, include_charged)
            .await
            .map_err(|e| e.to_string())?;
        if refs.is_empty() {
            return Ok((total, true));
        }
        let shas: Vec<String> = refs.iter().map(|r| r.sha256.clone()).collect();
        let (deleted, error) = delete_images(images, shas).await;
        let purged: Vec<ImageRef> = refs
            .iter()
            .filter(|r| deleted.contains(&r.sha256))
            .cloned()
            .collect();
        if !purged.is_empty() {
            store
                .mark_images_purged(&purged, at)
                .await
                .map_err(|e| e.to_string())?;
        }
        total += deleted.len() as u64;
        if let Some(e) = error {
            return Err(e);
        }
        if refs.len() < batch as usize {
            return Ok((total, true));
        }
    }
    // The batch limit of one run: the next run goes on.
    Ok((total, false))
}

/// One retention run at `now`: images, reports, inspections, audit, each
/// in batches. A failing class is reported and the others still run.
pub async fn purge_once(
    store: &dyn Store,
    images: &dyn ObjectStore,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    metrics: &RetentionMetrics,
) -> PurgeSummary {
    let mut summary = PurgeSummary::default();
    for class in [
        DataClass::Images,
        DataClass::Reports,
        DataClass::Findings,
        DataClass::Audit,
    ] {
        let Some(days) = config.days(class) else {
            continue;
        };
        let before = now - chrono::Duration::days(i64::from(days));
        let result = match class {
            DataClass::Images => purge_images(store, images, before, false, config.batch, now)
                .await
                .map(|(n, _)| n),
            class => {
                let mut total = 0;
                let mut result = Ok(0);
                // Inspections take their images with them, charged ones'
                // included: nothing would refer to them afterwards.
                // Only once all their images are gone: an inspection deleted
                // first would leave its images in the object store with
                // nothing pointing at them.
                if class == DataClass::Findings {
                    match purge_images(store, images, before, true, config.batch, now).await {
                        Ok((_, true)) => {}
                        Ok((_, false)) => {
                            tracing::info!(
                                "retention: images of expired inspections still being deleted; the inspections go at a later run"
                            );
                            continue;
                        }
                        Err(e) => result = Err(e),
                    }
                }
                for _ in 0..MAX_BATCHES {
                    if result.is_err() {
                        break;
                    }
                    match store.purge(class, before, config.batch).await {
                        Ok(n) => {
                            total += n;
                            result = Ok(total);
                            if n < u64::from(config.batch) {
                                break;
                            }
                        }
                        Err(e) => {
                            result = Err(e.to_string());
                            break;
                        }
                    }
                }
                result
            }
        };
        let labels = ClassLabels {
            class: class.as_str(),
        };
        match result {
            Ok(n) => {
                metrics.purged.get_or_create(&labels).inc_by(n);
                match class {
                    DataClass::Images => summary.images = n,
                    DataClass::Reports => summary.reports = n,
                    DataClass::Findings => summary.findings = n,
                    DataClass::Audit => summary.audit = n,
                }
                if n > 0 {
                    tracing::info!(class = class.as_str(), deleted = n, %before, "retention purge");
                }
            }
            Err(e) => {
                metrics.errors.get_or_create(&labels).inc();
                tracing::warn!(class = class.as_str(), error = %e, "retention purge failed; retried at the next run");
                summary.errors.push(format!("{}: {e}", class.as_str()));
            }
        }
    }
    if summary.errors.is_empty() {
        metrics.last_success.set(now.timestamp());
    }
    summary
}

/// Runs a purge every `interval_minutes` (the first one a minute after
/// start) until `stop`.
pub async fn run(
    store: Arc<dyn Store>,
    images: Arc<dyn ObjectStore>,
    config: RetentionConfig,
    metrics: RetentionMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        purge_once(
            store.as_ref(),
            images.as_ref(),
            &config,
            Utc::now(),
            &metrics,
        )
        .await;
        wait = Duration::from_secs(u64::from(config.interval_minutes) * 60);
    }
}

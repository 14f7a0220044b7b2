//! The batcher: decodes what arrived, stores a batch, then acks it (see the
//! DESIGN block of `mod.rs` for the order and the failure rules).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{
    Ack, DeviceMessage, Event, MAX_ACK_IDS, Status, Telemetry, V1, decode_device_message, encode,
};
use rumqttc::{AsyncClient, ClientError, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::connection::Received;
use super::metrics::{KindLabels, ReasonLabels, ResultLabels};
use super::{BridgeHealth, BridgeMetrics, backoff};
use crate::store::{DeadLetter, Recorded, Store, StoreError};

const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How often requests that found rumqttc's channel full are offered again.
const UNSENT_RETRY: Duration = Duration::from_millis(10);

/// What a message turned into.
enum Body {
    Event(Event),
    Status(Status),
    Telemetry(Telemetry),
    Dead(DeadLetter),
}

/// One received message on its way through a batch.
struct Item {
    received: Received,
    body: Body,
    /// Stored (or, for a dead letter that could not be stored, given up).
    done: bool,
    /// The event was stored (now or before): ack it to its device.
    ack: Option<(SiteId, DeviceId, Uuid)>,
}

/// A request rumqttc's channel did not take (full): offered again later.
pub(super) enum Unsent {
    Ack { topic: String, payload: Vec<u8> },
    PubAck { publish: Publish, epoch: u64 },
}

pub(super) struct Worker {
    pub client: AsyncClient,
    pub rx: mpsc::Receiver<Received>,
    pub prefix: TopicPrefix,
    pub store: Arc<dyn Store>,
    pub batch_max: usize,
    pub batch_max_delay: Duration,
    pub epoch: Arc<AtomicU64>,
    pub metrics: BridgeMetrics,
    pub health: BridgeHealth,
    pub unsent: VecDeque<Unsent>,
}

fn dead(received: &Received, reason: &'static str, detail: String) -> DeadLetter {
    DeadLetter {
        topic: received.publish.topic.clone(),
        payload: received.publish.payload.to_vec(),
        reason: reason.to_owned(),
        detail,
        received_at: received.received_at,
    }
}

impl Worker {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, done: watch::Sender<bool>) {
        let mut batch: Vec<Item> = Vec::with_capacity(self.batch_max);
        'serve: loop {
            self.send_unsent();
            // Wait for the first message of a batch.
            let first = tokio::select! {
                biased;
                _ = wait_true(&mut shutdown) => break 'serve,
                received = self.rx.recv() => match received {
                    Some(r) => r,
                    None => break 'serve,
                },
                _ = tokio::time::sleep(UNSENT_RETRY), if !self.unsent.is_empty() => continue 'serve,
            };
            batch.push(self.classify(first));
            // Fill it, bounded in count and time. A shutdown now still
            // stores and acks what is in hand.
            let deadline = tokio::time::Instant::now() + self.batch_max_delay;
            while batch.len() < self.batch_max {
                tokio::select! {
                    biased;
                    received = self.rx.recv() => match received {
                        Some(r) => batch.push(self.classify(r)),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            if !self.store_with_retry(&mut batch, &mut shutdown).await {
                // Shut down while the store was failing: nothing of this
                // batch is acked, so the broker and devices still hold it.
                break 'serve;
            }
            self.ack(&batch);
            batch.clear();
        }
        self.send_unsent();
        if let Err(e) = self.client.try_disconnect() {
            warn!(error = %e, "bridge shutdown: could not queue DISCONNECT");
        }
        info!("bridge stopped");
        let _ = done.send(true);
    }

    /// Decodes one message; a refused payload becomes a dead letter.
    fn classify(&self, received: Received) -> Item {
        let topic = Topic::parse(&self.prefix, &received.publish.topic);
        let kind = match &topic {
            Ok(t) => t.kind.as_str(),
            Err(_) => "unknown",
        };
        self.metrics
            .received
            .get_or_create(&KindLabels { kind })
            .inc();
        let body = match topic {
            Err(e) => self.reject(&received, "unknown_topic", e.to_string()),
            Ok(topic) => match decode_device_message(&topic, &received.publish.payload) {
                Ok(DeviceMessage::Event(e)) => Body::Event(e),
                Ok(DeviceMessage::Status(s)) => Body::Status(s),
                Ok(DeviceMessage::Telemetry(t)) => Body::Telemetry(t),
                Err(e) => self.reject(&received, e.code(), e.to_string()),
            },
        };
        Item {
            received,
            body,
            done: false,
            ack: None,
        }
    }

    fn reject(&self, received: &Received, reason: &'static str, detail: String) -> Body {
        self.metrics
            .rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
        // The payload (and the error, which may quote it) is in the dead
        // letter, not in the log.
        warn!(
            topic = %received.publish.topic,
            reason,
            bytes = received.publish.payload.len(),
            "bridge refused a payload (dead-lettered)"
        );
        Body::Dead(dead(received, reason, detail))
    }

    /// Stores the batch, retrying transient failures with backoff until it
    /// succeeds (true) or `shutdown` becomes true (false).
    async fn store_with_retry(
        &mut self,
        batch: &mut [Item],
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            match self.store_batch(batch).await {
                Ok(()) => {
                    if attempt > 0 {
                        info!(attempts = attempt + 1, "bridge store recovered");
                    }
                    self.health.set_store_failing(&self.metrics, false);
                    return true;
                }
                Err(e) => {
                    self.metrics
                        .store_errors
                        .get_or_create(&super::metrics::CodeLabels { code: e.code() })
                        .inc();
                    self.health.set_store_failing(&self.metrics, true);
                    let delay = backoff(attempt, RETRY_BASE, RETRY_MAX);
                    attempt = attempt.saturating_add(1);
                    warn!(error = %e, code = e.code(), retry_in = ?delay, messages = batch.len(),
                        "bridge could not store a batch; nothing of it is acked");
                    // Keep acks of earlier batches moving while waiting.
                    self.send_unsent();
                    if *shutdown.borrow() {
                        return false;
                    }
                    tokio::select! {
                        biased;
                        _ = wait_true(shutdown) => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// One pass over what is not yet stored. Transient errors abort the
    /// pass (the caller retries; what was stored stays `done`); permanent
    /// ones turn the message into a dead letter.
    async fn store_batch(&self, batch: &mut [Item]) -> Result<(), StoreError> {
        let now = Utc::now();
        let pending: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, it)| !it.done && matches!(it.body, Body::Event(_)))
            .map(|(i, _)| i)
            .collect();
        if !pending.is_empty() {
            let events: Vec<Event> = pending
                .iter()
                .filter_map(|&i| match &batch[i].body {
                    Body::Event(e) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            match self.store.record_events(&events, now).await {
                Ok(recorded) => {
                    self.metrics.batch_size.observe(events.len() as f64);
                    for (&i, result) in pending.iter().zip(recorded) {
                        self.stored(&mut batch[i], result);
                    }
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    // One of them may be the cause: store them one by one.
                    warn!(error = %e, "bridge: a batch was refused; storing its events one by one");
                    for &i in &pending {
                        let Body::Event(event) = &batch[i].body else {
                            continue;
                        };
                        match self
                            .store
                            .record_events(std::slice::from_ref(event), now)
                            .await
                        {
                            Ok(recorded) => {
                                let result =
                                    recorded.first().copied().unwrap_or(Recorded::Duplicate);
                                self.stored(&mut batch[i], result);
                            }
                            Err(e) if e.is_transient() => return Err(e),
                            Err(e) => self.store_rejected(&mut batch[i], &e),
                        }
                    }
                }
            }
        }
        for item in batch.iter_mut().filter(|it| !it.done) {
            let result = match &item.body {
                Body::Event(_) => continue,
                Body::Status(s) => self.store.record_status(s, item.received.received_at).await,
                Body::Telemetry(t) => {
                    self.store
                        .record_telemetry(t, item.received.received_at)
                        .await
                }
                Body::Dead(letter) => self.store.dead_letter(letter).await.map(|_| ()),
            };
            match result {
                Ok(()) => item.done = true,
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => self.store_rejected(item, &e),
            }
        }
        // Dead letters made from permanent failures above.
        for item in batch.iter_mut().filter(|it| !it.done) {
            let Body::Dead(letter) = &item.body else {
                continue;
            };
            match self.store.dead_letter(letter).await {
                Ok(_) => item.done = true,
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    error!(error = %e, topic = %letter.topic, reason = %letter.reason,
                        "bridge could not keep a dead letter; dropping it");
                    item.done = true;
                }
            }
        }
        Ok(())
    }

    fn stored(&self, item: &mut Item, result: Recorded) {
        let Body::Event(event) = &item.body else {
            return;
        };
        let label = match result {
            Recorded::Inserted => "inserted",
            Recorded::Duplicate => "duplicate",
        };
        self.metrics
            .events_stored
            .get_or_create(&ResultLabels { result: label })
            .inc();
        self.metrics
            .commit_latency
            .observe(item.received.at.elapsed().as_secs_f64());
        item.ack = Some((event.site.clone(), event.device.clone(), event.msg_id));
        item.done = true;
    }

    /// A message the store refuses for good (not a transient failure):
    /// kept as a dead letter, never acked to its device.
    fn store_rejected(&self, item: &mut Item, e: &StoreError) {
        if matches!(item.body, Body::Dead(_)) {
            error!(error = %e, "bridge could not keep a dead letter; dropping it");
            item.done = true;
            return;
        }
        let reason = "store_rejected";
        self.metrics
            .rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
        error!(error = %e, topic = %item.received.publish.topic,
            "the store refused a message; dead-lettering it");
        item.body = Body::Dead(dead(&item.received, reason, e.to_string()));
    }

    /// Publishes the acks of a stored batch, then PUBACKs its publishes.
    fn ack(&mut self, batch: &[Item]) {
        // Per device, in arrival order.
        let mut per_device: Vec<((SiteId, DeviceId), Vec<Uuid>)> = Vec::new();
        for (site, device, msg_id) in batch.iter().filter_map(|it| it.ack.clone()) {
            let key = (site, device);
            match per_device.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ids)) => ids.push(msg_id),
                None => per_device.push((key, vec![msg_id])),
            }
        }
        for ((site, device), ids) in per_device {
            let topic = Topic::new(site, device, TopicKind::Ack).render(&self.prefix);
            for chunk in ids.chunks(MAX_ACK_IDS) {
                let ack = Ack {
                    v: V1,
                    msg_ids: chunk.to_vec(),
                    at: Utc::now(),
                };
                match encode(&ack) {
                    Ok(payload) => {
                        self.metrics.acked_ids.inc_by(chunk.len() as u64);
                        self.unsent.push_back(Unsent::Ack {
                            topic: topic.clone(),
                            payload,
                        });
                    }
                    // Cannot happen for 1..=MAX_ACK_IDS ids; the device
                    // republishes and is acked then.
                    Err(e) => error!(error = %e, "bridge could not encode an ack"),
                }
            }
        }
        for item in batch {
            self.unsent.push_back(Unsent::PubAck {
                publish: item.received.publish.clone(),
                epoch: item.received.epoch,
            });
        }
        self.send_unsent();
    }

    /// Offers queued requests to rumqttc without waiting: the connection
    /// task that drains its channel may itself be waiting for this worker.
    fn send_unsent(&mut self) {
        while let Some(request) = self.unsent.pop_front() {
            let result = match &request {
                Unsent::Ack { topic, payload } => self
                    .client
                    .try_publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                    .map(|()| {
                        self.metrics.acks_published.inc();
                    }),
                Unsent::PubAck { publish, epoch } => {
                    // A PUBACK is only meaningful on the connection the
                    // publish came in on; after a reconnect the broker
                    // redelivers it and that copy is acked instead.
                    if *epoch != self.epoch.load(Ordering::SeqCst) {
                        continue;
                    }
                    self.client.try_ack(publish)
                }
            };
            match result {
                Ok(()) => {}
                Err(ClientError::TryRequest(_)) => {
                    self.unsent.push_front(request);
                    return;
                }
                // The event loop is gone (shutting down): nothing to send to.
                Err(ClientError::Request(_)) => {
                    self.unsent.clear();
                    return;
                }
            }
        }
    }
}

/// Resolves when the watched flag is (or becomes) true; never if its
/// sender is dropped while false.
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

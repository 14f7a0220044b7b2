//! The uplink task: drains the outbox in order, handles acks and commands,
//! sends telemetry. See the module documentation for the rules.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::TopicKind;
use inspection_core::wire::{
    self, Ack, Command, CommandBody, CommandOutcome, DeviceState, Sha256Hex,
};
use rumqttc::{AsyncClient, EventLoop, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::backoff::Backoff;
use super::config::UplinkConfig;
use super::metrics::UplinkMetrics;
use super::mqtt::{self, Connection, MqttEvent, Topics};
use super::telemetry::TelemetrySource;
use super::upload::{UploadOutcome, Uploader};
use super::{ReloadFn, UplinkError, tls};
use crate::config::Identity;
use crate::ops::Health;
use crate::outbox::{Entry, EntryId, EntryKind, Outbox};
use crate::pipeline::{CommandAction, DeviceCommand};
use crate::session::SessionCommand;

/// Entries fetched from the outbox at a time: a few, since images are
/// ~0.5 MB each and all of them are held in memory until handled.
const FETCH: usize = 8;

/// How often the outbox is looked at when there is nothing to do, and
/// in-flight events are checked against their ack timeout.
const TICK: Duration = Duration::from_millis(200);

/// Command ids remembered to refuse a redelivery (QoS 1 may deliver twice,
/// and a persistent session replays after a reconnect).
const REMEMBERED_COMMANDS: usize = 1024;

/// How long a clean shutdown waits for the offline status and DISCONNECT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The detail of a `command_result` is at most 256 characters.
const MAX_DETAIL: usize = 256;

/// A clock offset to central beyond this is logged as a warning.
const CLOCK_SKEW_WARN: TimeDelta = TimeDelta::seconds(30);

/// The edge side of the transport. Build it with [`Uplink::new`] (which
/// loads the TLS files and token, so a bad file fails the start) and
/// [`run`](Uplink::run) it beside the pipeline.
pub struct Uplink {
    config: UplinkConfig,
    site: SiteId,
    device: DeviceId,
    topics: Topics,
    boot_id: Uuid,
    /// The connection state the MQTT driver takes over; its `opened_at` is
    /// the `at` of the will already in the client's options.
    conn: Connection,
    outbox: Arc<Mutex<Outbox>>,
    commands: mpsc::Sender<DeviceCommand>,
    reload: Option<ReloadFn>,
    telemetry: TelemetrySource,
    metrics: UplinkMetrics,
    health: Health,
    client: AsyncClient,
    eventloop: EventLoop,
    uploader: Uploader,
}

/// An event published and not yet acknowledged.
struct InFlight {
    id: EntryId,
    payload: Bytes,
    sent_at: Instant,
}

impl Uplink {
    /// Everything is checked and loaded here; nothing connects until `run`.
    pub fn new(
        config: UplinkConfig,
        identity: &Identity,
        outbox: Arc<Mutex<Outbox>>,
        commands: mpsc::Sender<DeviceCommand>,
        telemetry: TelemetrySource,
        metrics: UplinkMetrics,
        health: Health,
    ) -> Result<Uplink, UplinkError> {
        let problems = config.problems("uplink", inspection_core::config::FileChecks::On);
        if !problems.is_empty() {
            return Err(UplinkError::Config(problems.join("; ")));
        }
        let token = match &config.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    UplinkError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                let token = text.trim().to_owned();
                if token.is_empty() {
                    return Err(UplinkError::Config(format!(
                        "{} holds no token",
                        path.display()
                    )));
                }
                Some(token)
            }
            None => None,
        };
        let tls = match &config.ca {
            Some(ca) => {
                let identity = config.cert.as_deref().zip(config.key.as_deref());
                Some(tls::client_config(ca, identity)?)
            }
            None => None,
        };
        let (site, device) = (identity.site.clone(), identity.device.clone());
        let topics = Topics::new(&identity.prefix, &site, &device);
        // v7: random in its low bits, and sorts by start time.
        let boot_id = Uuid::now_v7();
        let conn = Connection {
            site: site.clone(),
            device: device.clone(),
            boot_id,
            topics: topics.clone(),
            backoff: Backoff::new(config.backoff_initial(), config.backoff_max()),
            metrics: metrics.clone(),
            opened_at: Utc::now(),
        };
        let (client, eventloop) = mqtt::client(&config, &conn, tls.clone(), token.as_deref())?;
        let basic = token.map(|t| (format!("{site}/{device}"), t));
        let upload_base = config.upload_base().map_err(UplinkError::Config)?;
        let uploader = Uploader::new(&upload_base, tls, basic, config.upload_timeout())?;
        Ok(Uplink {
            config,
            site,
            device,
            topics,
            boot_id,
            conn,
            outbox,
            commands,
            reload: None,
            telemetry,
            metrics,
            health,
            client,
            eventloop,
            uploader,
        })
    }

    /// What a `reload_config` command runs: the same reload as SIGHUP,
    /// returning why the new file was refused.
    pub fn with_reload(mut self, reload: ReloadFn) -> Self {
        self.reload = Some(reload);
        self
    }

    /// This process's `boot_id`, as the status messages carry it.
    pub fn boot_id(&self) -> Uuid {
        self.boot_id
    }

    /// Runs until `shutdown` becomes true; then publishes the retained
    /// `offline` status and disconnects cleanly.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), UplinkError> {
        let Uplink {
            config,
            site,
            device,
            topics,
            boot_id,
            conn,
            outbox,
            commands,
            reload,
            telemetry,
            metrics,
            health,
            client,
            eventloop,
            uploader,
        } = self;
        let (events_tx, mut events) = mpsc::unbounded_channel();
        // The connection task sends on an unbounded channel: if it had to
        // wait for this task while this task waits for it to take a
        // request, both would stop. What arrives is small and paced by the
        // broker (acks and commands).
        let driver = tokio::spawn(mqtt::drive(eventloop, conn, events_tx));
        health.set("uplink", true, "connecting");

        let mut state = State {
            config: &config,
            topics: &topics,
            client: &client,
            outbox: &outbox,
            metrics: &metrics,
            health: &health,
            uploader,
            connected: false,
            queue: VecDeque::new(),
            cursor: None,
            in_flight: HashMap::new(),
            upload: None,
            retry_at: None,
            upload_backoff: Backoff::new(config.backoff_initial(), config.backoff_max()),
            fetch_now: true,
            seen_commands: VecDeque::new(),
            seen_set: HashSet::new(),
            clock_offset: None,
        };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut telemetry_tick = tokio::time::interval(config.telemetry_interval());
        telemetry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        telemetry_tick.tick().await;
        let mut telemetry_state = telemetry.start();
        let mut driver_done = false;

        loop {
            state.progress().await;
            let retry_wait = state.retry_at.map(tokio::time::Instant::from_std);
            tokio::select! {
                event = events.recv() => match event {
                    Some(MqttEvent::Connected { session_present }) => {
                        state.on_connected(session_present).await;
                    }
                    Some(MqttEvent::Disconnected) => {
                        state.connected = false;
                        health.set("uplink", true, "disconnected; reconnecting");
                    }
                    Some(MqttEvent::Message { kind: TopicKind::Ack, payload }) => {
                        state.on_ack(&payload).await;
                    }
                    Some(MqttEvent::Message { kind, payload }) => {
                        debug_assert_eq!(kind, TopicKind::Cmd);
                        state.on_command(&payload, &commands, reload.as_ref()).await;
                    }
                    Some(MqttEvent::Closed) | None => {
                        driver_done = true;
                        break;
                    }
                },
                outcome = wait_upload(&mut state.upload), if state.upload.is_some() => {
                    state.upload = None;
                    state.on_upload(outcome).await;
                }
                _ = sleep_until_opt(retry_wait), if retry_wait.is_some() => {
                    state.retry_at = None;
                }
                _ = tick.tick() => {
                    state.republish_due();
                    if state.queue.is_empty() {
                        state.fetch_now = true;
                    }
                }
                _ = telemetry_tick.tick() => {
                    if state.connected {
                        state.publish_telemetry(&telemetry, &mut telemetry_state, &site, &device).await;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }

        if let Some(upload) = state.upload.take() {
            upload.abort();
        }
        if state.connected && !driver_done {
            // A clean goodbye: the retained status says offline now, and
            // DISCONNECT tells the broker not to send the will.
            match mqtt::status_payload(&site, &device, boot_id, DeviceState::Offline, Utc::now()) {
                Ok(payload) => {
                    if client
                        .try_publish(topics.status.clone(), QoS::AtLeastOnce, true, payload)
                        .is_ok()
                    {
                        metrics.publish("status");
                    }
                }
                Err(error) => tracing::error!(%error, "cannot encode the offline status"),
            }
            let _ = client.try_disconnect();
            let closed = tokio::time::timeout(CLOSE_TIMEOUT, async {
                while let Some(event) = events.recv().await {
                    if matches!(event, MqttEvent::Closed) {
                        break;
                    }
                }
            })
            .await;
            if closed.is_err() {
                tracing::warn!("the broker did not take the disconnect in time");
            }
        }
        driver.abort();
        metrics.connected.set(0);
        metrics.in_flight.set(0);
        health.set("uplink", true, "stopped");
        tracing::info!(in_flight = state.in_flight.len(), "uplink stopped");
        Ok(())
    }
}

async fn wait_upload(upload: &mut Option<JoinHandle<UploadOutcome>>) -> UploadOutcome {
    match upload {
        Some(handle) => handle.await.unwrap_or_else(|e| UploadOutcome::Retry {
            code: "task".into(),
            detail: e.to_string(),
        }),
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs `f` on the outbox from a blocking thread (every call may fsync),
/// holding the lock only for the call.
async fn with_outbox<R: Send + 'static>(
    outbox: &Arc<Mutex<Outbox>>,
    f: impl FnOnce(&mut Outbox) -> Result<R, crate::outbox::OutboxError> + Send + 'static,
) -> Result<R, UplinkError> {
    let outbox = outbox.clone();
    tokio::task::spawn_blocking(move || {
        let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut outbox)
    })
    .await
    .map_err(|e| UplinkError::Task(e.to_string()))?
    .map_err(UplinkError::Outbox)
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

struct State<'a> {
    config: &'a UplinkConfig,
    topics: &'a Topics,
    client: &'a AsyncClient,
    outbox: &'a Arc<Mutex<Outbox>>,
    metrics: &'a UplinkMetrics,
    health: &'a Health,
    uploader: Uploader,
    connected: bool,
    /// Entries fetched and not yet handled, in insertion order; the head
    /// is the next to go.
    queue: VecDeque<Entry>,
    /// The last entry fetched: the next fetch starts after it.
    cursor: Option<EntryId>,
    in_flight: HashMap<Uuid, InFlight>,
    /// The running upload of the head image.
    upload: Option<JoinHandle<UploadOutcome>>,
    /// No new upload attempt before this (backoff after a failure).
    retry_at: Option<Instant>,
    upload_backoff: Backoff,
    /// Whether to look at the outbox before the next wait.
    fetch_now: bool,
    seen_commands: VecDeque<Uuid>,
    seen_set: HashSet<Uuid>,
    /// Central's clock minus this board's, from the last ack's `at`; `None`
    /// until an ack arrived.
    clock_offset: Option<TimeDelta>,
}

impl State<'_> {
    /// Moves the head of the queue along as far as it can without waiting:
    /// fetches, publishes events, starts an image upload.
    async fn progress(&mut self) {
        loop {
            if self.queue.is_empty() {
                if !self.fetch_now {
                    return;
                }
                self.fetch_now = false;
                let cursor = self.cursor;
                match with_outbox(self.outbox, move |o| o.pending_after(cursor, FETCH)).await {
                    Ok(entries) => {
                        if let Some(last) = entries.last() {
                            self.cursor = Some(last.id);
                            // A full page: there may be more right behind it.
                            self.fetch_now = entries.len() == FETCH;
                        }
                        self.queue.extend(entries);
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot read the outbox");
                        return;
                    }
                }
                if self.queue.is_empty() {
                    return;
                }
            }
            let Some(head) = self.queue.front() else {
                return;
            };
            match &head.kind {
                EntryKind::Image { sha256, jpeg } => {
                    if self.upload.is_some() || self.retry_at.is_some_and(|t| t > Instant::now()) {
                        return;
                    }
                    // An image goes up before any later event is published:
                    // central never hears of an image it cannot fetch.
                    let uploader_sha = sha256.clone();
                    let body = Bytes::from(jpeg.clone());
                    let uploader = self.uploader.clone();
                    let id = head.id;
                    self.upload = Some(tokio::spawn(async move {
                        uploader.put(&uploader_sha, body).await
                    }));
                    let _ = with_outbox(self.outbox, move |o| o.record_attempts(&[id])).await;
                    return;
                }
                EntryKind::Event {
                    msg_id, payload, ..
                } => {
                    if !self.connected || self.in_flight.len() >= self.config.max_in_flight {
                        return;
                    }
                    let (msg_id, payload, id) = (*msg_id, Bytes::from(payload.clone()), head.id);
                    self.queue.pop_front();
                    if self.publish_event(&payload) {
                        self.metrics.publish("event");
                    }
                    self.in_flight.insert(
                        msg_id,
                        InFlight {
                            id,
                            payload,
                            sent_at: Instant::now(),
                        },
                    );
                    self.metrics.in_flight.set(self.in_flight.len() as i64);
                    let _ = with_outbox(self.outbox, move |o| o.record_attempts(&[id])).await;
                }
            }
        }
    }

    /// Hands an event to the MQTT client. False when its queue is full (the
    /// connection is stalling): the event stays in flight and goes again
    /// after the ack timeout or the next reconnect.
    fn publish_event(&self, payload: &Bytes) -> bool {
        match self.client.try_publish(
            self.topics.events.clone(),
            QoS::AtLeastOnce,
            false,
            payload.to_vec(),
        ) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "MQTT client queue full; the event goes again later");
                false
            }
        }
    }

    async fn on_connected(&mut self, session_present: bool) {
        self.connected = true;
        self.health.set("uplink", true, "connected");
        // Whatever was in flight may have died with the old connection (or
        // the broker, which keeps nothing on disk): publish it all again,
        // in order. Central deduplicates by msg_id.
        let mut again: Vec<(EntryId, Uuid)> =
            self.in_flight.iter().map(|(m, f)| (f.id, *m)).collect();
        again.sort();
        let now = Instant::now();
        for (_, msg_id) in &again {
            if let Some(f) = self.in_flight.get(msg_id) {
                let payload = f.payload.clone();
                if self.publish_event(&payload) {
                    self.metrics.publish("event");
                    self.metrics.republished("reconnect");
                }
            }
            if let Some(f) = self.in_flight.get_mut(msg_id) {
                f.sent_at = now;
            }
        }
        tracing::info!(
            session_present,
            republished = again.len(),
            "uplink connected"
        );
    }

    /// Publishes again every event whose ack is overdue.
    fn republish_due(&mut self) {
        if !self.connected {
            return;
        }
        let timeout = self.config.ack_timeout();
        let now = Instant::now();
        let mut due: Vec<(EntryId, Uuid)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now.duration_since(f.sent_at) >= timeout)
            .map(|(m, f)| (f.id, *m))
            .collect();
        due.sort();
        for (_, msg_id) in due {
            let Some(payload) = self.in_flight.get(&msg_id).map(|f| f.payload.clone()) else {
                continue;
            };
            if self.publish_event(&payload) {
                self.metrics.publish("event");
                self.metrics.republished("ack_timeout");
                tracing::info!(%msg_id, "no ack within the timeout; event published again");
            }
            if let Some(f) = self.in_flight.get_mut(&msg_id) {
                f.sent_at = now;
            }
        }
    }

    async fn on_ack(&mut self, payload: &[u8]) {
        let ack = match wire::decode::<Ack>(payload) {
            Ok(ack) => ack,
            Err(error) => {
                tracing::warn!(%error, code = error.code(), "undecodable ack ignored");
                self.metrics.bad_message("ack", error.code());
                return;
            }
        };
        self.metrics.acks_received.inc();
        self.observe_central_clock(ack.at);
        let ids = ack.msg_ids;
        let removed_ids = ids.clone();
        match with_outbox(self.outbox, move |o| o.ack_events(&ids)).await {
            Ok(n) => {
                self.metrics.acked_entries.inc_by(n as u64);
                // Only once the outbox forgot them: a crash before this
                // point re-publishes them, which central deduplicates.
                for msg_id in &removed_ids {
                    self.in_flight.remove(msg_id);
                }
                self.queue.retain(|e| match &e.kind {
                    EntryKind::Event { msg_id, .. } => !removed_ids.contains(msg_id),
                    EntryKind::Image { .. } => true,
                });
                self.metrics.in_flight.set(self.in_flight.len() as i64);
                tracing::debug!(acked = n, "ack applied");
            }
            Err(error) => {
                // The events stay in flight and are published again after
                // the timeout; central acks them again.
                tracing::error!(%error, "cannot apply an ack to the outbox");
            }
        }
    }

    /// Learns central's clock from an ack's `at` (stamped when central
    /// published it; the trip takes milliseconds). A board whose clock is
    /// off (no RTC battery, NTP unreachable) would otherwise refuse fresh
    /// commands as expired, or run stale ones; the offset is exported, and
    /// logged when it crosses [`CLOCK_SKEW_WARN`].
    fn observe_central_clock(&mut self, central_at: DateTime<Utc>) {
        let offset = central_at - Utc::now();
        let skewed = |o: TimeDelta| o.abs() > CLOCK_SKEW_WARN;
        match (self.clock_offset, skewed(offset)) {
            (previous, true) if !previous.is_some_and(skewed) => tracing::warn!(
                offset_seconds = offset.as_seconds_f64(),
                "this board's clock differs from central's by more than {} s: \
                 check NTP; commands are judged on central's clock",
                CLOCK_SKEW_WARN.num_seconds()
            ),
            (Some(previous), false) if skewed(previous) => tracing::info!(
                offset_seconds = offset.as_seconds_f64(),
                "this board's clock agrees with central's again"
            ),
            _ => {}
        }
        self.clock_offset = Some(offset);
        self.metrics
            .clock_offset_seconds
            .set(offset.as_seconds_f64());
    }

    async fn on_upload(&mut self, outcome: UploadOutcome) {
        let Some(Entry {
            kind: EntryKind::Image { sha256, .. },
            ..
        }) = self.queue.front()
        else {
            return;
        };
        let sha256: Sha256Hex = sha256.clone();
        match outcome {
            UploadOutcome::Stored { created } => {
                self.metrics
                    .upload(if created { "created" } else { "present" });
                self.upload_backoff.reset();
                let sha = sha256.clone();
                match with_outbox(self.outbox, move |o| o.ack_image(&sha)).await {
                    Ok(_) => {
                        self.queue.pop_front();
                        tracing::debug!(%sha256, created, "image uploaded");
                    }
                    Err(error) => {
                        tracing::error!(%error, %sha256, "cannot remove an uploaded image from the outbox");
                        self.retry_later();
                    }
                }
            }
            UploadOutcome::Retry { code, detail } => {
                self.metrics.upload("retry");
                tracing::warn!(%sha256, code, detail, "image upload failed; retrying after a backoff");
                self.retry_later();
            }
            UploadOutcome::Rejected { status, detail } => {
                self.metrics.upload("rejected");
                self.metrics.reject("image", status.to_string());
                // Central refused the image itself (bad JPEG, wrong hash, too
                // large): no retry can ever succeed, and keeping it would
                // block every later entry behind it forever. It is removed,
                // logged and counted; the event naming it still goes, so
                // central records the inspection with the image missing.
                tracing::error!(%sha256, status, detail, "central refused an image for good; removed from the outbox");
                let sha = sha256.clone();
                match with_outbox(self.outbox, move |o| o.ack_image(&sha)).await {
                    Ok(_) => {
                        self.queue.pop_front();
                    }
                    Err(error) => {
                        tracing::error!(%error, %sha256, "cannot remove a refused image from the outbox");
                        self.retry_later();
                    }
                }
            }
        }
    }

    fn retry_later(&mut self) {
        let delay = self.upload_backoff.next_delay();
        self.metrics.backoff("upload", delay);
        self.retry_at = Some(Instant::now() + delay);
    }

    async fn on_command(
        &mut self,
        payload: &[u8],
        commands: &mpsc::Sender<DeviceCommand>,
        reload: Option<&ReloadFn>,
    ) {
        let cmd = match wire::decode::<Command>(payload) {
            Ok(cmd) => cmd,
            Err(error) => {
                tracing::warn!(%error, code = error.code(), "undecodable command ignored");
                self.metrics.bad_message("cmd", error.code());
                return;
            }
        };
        let name = cmd.command.name();
        let report = |outcome, detail: Option<String>| CommandAction::Report {
            outcome,
            detail: detail.map(|d| clip(&d, MAX_DETAIL)),
        };
        let (label, action) = if self.seen_set.contains(&cmd.cmd_id) {
            (
                "duplicate",
                report(
                    CommandOutcome::Duplicate,
                    Some("this command id was handled already".into()),
                ),
            )
        } else {
            if self.seen_commands.len() >= REMEMBERED_COMMANDS
                && let Some(old) = self.seen_commands.pop_front()
            {
                self.seen_set.remove(&old);
            }
            self.seen_commands.push_back(cmd.cmd_id);
            self.seen_set.insert(cmd.cmd_id);
            // Central's clock, as far as the acks tell it: `expires_at` is
            // central's time, and this board's clock may be off.
            let now = Utc::now() + self.clock_offset.unwrap_or_default();
            match (cmd.expires_at, cmd.command) {
                (Some(expires_at), _) if expires_at < now => (
                    "expired",
                    report(
                        CommandOutcome::Expired,
                        Some(format!(
                            "expired at {expires_at}, received at {now} (central's clock)"
                        )),
                    ),
                ),
                (_, CommandBody::StartInspection { kind }) => (
                    "forwarded",
                    CommandAction::Session(SessionCommand::Start {
                        kind,
                        cmd_id: cmd.cmd_id,
                    }),
                ),
                (_, CommandBody::StopInspection { inspection_id }) => (
                    "forwarded",
                    CommandAction::Session(SessionCommand::Stop { inspection_id }),
                ),
                (_, CommandBody::CaptureNow { camera }) => (
                    "forwarded",
                    CommandAction::Session(SessionCommand::CaptureNow { camera }),
                ),
                (_, CommandBody::ReloadConfig) => match reload {
                    Some(reload) => {
                        let reload = reload.clone();
                        let result = tokio::task::spawn_blocking(move || reload())
                            .await
                            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
                        match result {
                            Ok(()) => ("executed", report(CommandOutcome::Executed, None)),
                            Err(reason) => (
                                "refused",
                                report(
                                    CommandOutcome::Refused,
                                    Some(format!(
                                        "new configuration refused; running one kept: {reason}"
                                    )),
                                ),
                            ),
                        }
                    }
                    None => (
                        "refused",
                        report(
                            CommandOutcome::Refused,
                            Some("this agent cannot reload its configuration".into()),
                        ),
                    ),
                },
            }
        };
        tracing::info!(cmd_id = %cmd.cmd_id, command = name, outcome = label, "command received");
        let sent = commands
            .send(DeviceCommand {
                cmd_id: cmd.cmd_id,
                command: name,
                action,
            })
            .await;
        if sent.is_err() {
            tracing::error!(cmd_id = %cmd.cmd_id, command = name, "the pipeline has stopped; command dropped");
            self.metrics.command(name, "dropped");
        } else {
            self.metrics.command(name, label);
        }
    }

    async fn publish_telemetry(
        &self,
        source: &TelemetrySource,
        state: &mut super::telemetry::TelemetryState,
        site: &SiteId,
        device: &DeviceId,
    ) {
        let stats = match with_outbox(self.outbox, |o| o.stats()).await {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "telemetry without outbox statistics");
                self.metrics.telemetry_errors.inc();
                return;
            }
        };
        let telemetry = source.snapshot(state, site, device, stats.into(), None, self.clock_offset);
        let payload = match wire::encode(&telemetry) {
            Ok(p) => p,
            Err(error) => {
                tracing::error!(%error, "cannot encode telemetry");
                self.metrics.telemetry_errors.inc();
                return;
            }
        };
        if self
            .client
            .try_publish(
                self.topics.telemetry.clone(),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .is_ok()
        {
            self.metrics.publish("telemetry");
        }
    }
}

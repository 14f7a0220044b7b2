//! Clocks skewed between the board and central (issue 10, RELIABILITY.md):
//! a board whose clock is hours off (no RTC battery, NTP unreachable)
//! learns central's clock from the acks, exports the offset, and judges a
//! command's `expires_at` (central's time) on central's clock: a fresh
//! command is executed and a stale one refused, whichever way the board's
//! clock is off; its telemetry reports the offset, which central uses to
//! date the board's inspections. Central is the STAND-IN of
//! `uplink_support`, with its clock moved by `clock_skew_ms`.

mod uplink_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use edge_agent::pipeline::CommandAction;
use edge_agent::session::SessionCommand;
use inspection_core::wire::{Command, CommandBody, CommandOutcome, InspectionKind, V1};
use uplink_support::*;
use uuid::Uuid;

fn start_command(at: chrono::DateTime<Utc>, lifetime: TimeDelta) -> Command {
    Command {
        v: V1,
        cmd_id: Uuid::now_v7(),
        at,
        expires_at: Some(at + lifetime),
        command: CommandBody::StartInspection {
            kind: InspectionKind::Return,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_judged_on_centrals_clock_when_the_boards_is_hours_off() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let central = StandIn::start(&broker, &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path());
    let mut uplink = RunningUplink::start(pki.uplink(&broker, central.upload), outbox.clone());

    for (case, skew) in [
        ("the board 2 h ahead", TimeDelta::hours(-2)),
        ("the board 2 h behind", TimeDelta::hours(2)),
        ("the board 90 s behind", TimeDelta::seconds(90)),
    ] {
        central
            .clock_skew_ms
            .store(skew.num_milliseconds(), Ordering::SeqCst);
        // An event, so that an ack carries central's time.
        append_small(&outbox);
        let expected = skew.as_seconds_f64();
        wait_until(
            &format!("{case}: the offset learned from an ack"),
            Duration::from_secs(30),
            || (uplink.metrics.clock_offset_seconds.get() - expected).abs() < 5.0,
            || {
                format!(
                    "offset {} s\n{}",
                    uplink.metrics.clock_offset_seconds.get(),
                    central.diag()
                )
            },
        )
        .await;

        // The board reports the offset in its telemetry (central dates its
        // inspections with it).
        let expected_ms = skew.num_milliseconds();
        wait_until(
            &format!("{case}: the offset in the board's telemetry"),
            Duration::from_secs(30),
            || {
                central
                    .seen
                    .lock()
                    .unwrap()
                    .telemetry
                    .last()
                    .and_then(|t| t.central_clock_offset_ms)
                    .is_some_and(|ms| (ms - expected_ms).abs() < 5_000)
            },
            || {
                format!(
                    "telemetry {:?}",
                    central.seen.lock().unwrap().telemetry.last()
                )
            },
        )
        .await;

        // Sent now by central with a minute to live, and one that expired
        // a minute ago, both in central's time.
        let central_now = Utc::now() + skew;
        let fresh = start_command(central_now, TimeDelta::minutes(1));
        let stale = start_command(central_now - TimeDelta::minutes(2), TimeDelta::minutes(1));
        central.command(&fresh).await;
        central.command(&stale).await;
        for _ in 0..2 {
            let got = tokio::time::timeout(Duration::from_secs(30), uplink.commands.recv())
                .await
                .unwrap_or_else(|_| panic!("{case}: no command within 30 s"))
                .expect("command channel open");
            if got.cmd_id == fresh.cmd_id {
                assert!(
                    matches!(
                        got.action,
                        CommandAction::Session(SessionCommand::Start { .. })
                    ),
                    "{case}: a fresh command was not executed: {:?}",
                    got.action
                );
            } else {
                assert_eq!(got.cmd_id, stale.cmd_id);
                let CommandAction::Report { outcome, detail } = &got.action else {
                    panic!("{case}: a stale command was executed: {:?}", got.action);
                };
                assert_eq!(*outcome, CommandOutcome::Expired, "{case}: {detail:?}");
            }
        }
        println!(
            "{case}: offset {:.1} s learned, fresh command executed, stale one expired",
            uplink.metrics.clock_offset_seconds.get()
        );
    }
    uplink.stop();
}

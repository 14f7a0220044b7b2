//! Known corruptions of the database file: each is moved aside (kept, byte
//! for byte), a fresh outbox opens, the recovery is counted and logged, and
//! the sequence numbers keep increasing.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
#[path = "outbox_support/mod.rs"]
mod support;

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use edge_agent::outbox::{OutboxConfig, Priority};
use support::{config, event, files_starting, image, metric, open};
use uuid::Uuid;

/// A closed database holding 10 images of 30 KB and 20 events.
fn populated(dir: &Path) -> OutboxConfig {
    let cfg = config(dir);
    let mut o = open(&cfg);
    for n in 0..10 {
        let (sha, jpeg) = image(n, 30_000);
        o.outbox
            .append_image(&sha, &jpeg, Priority::frame(1), Uuid::now_v7())
            .unwrap();
        o.outbox.append_event(event).unwrap();
        o.outbox.append_event(event).unwrap();
    }
    assert_eq!(o.outbox.last_seq(), 20);
    cfg
}

/// Opens the damaged file and checks the whole recovery contract.
fn assert_recovers(cfg: &OutboxConfig, reasons: &[&str], first_seq_above: u64) {
    let damaged = fs::read(&cfg.path).unwrap();
    let dir = cfg.path.parent().unwrap();
    let mut o = open(cfg);
    let recovered = o
        .report
        .recovered
        .clone()
        .expect("the damaged file must be recovered");
    eprintln!("recovered: {} ({})", recovered.reason, recovered.detail);
    assert!(
        reasons.contains(&recovered.reason),
        "reason {} ({}) not in {reasons:?}",
        recovered.reason,
        recovered.detail
    );
    assert_eq!(
        metric(
            &o.registry,
            &format!(
                "edge_outbox_recovered_total{{reason=\"{}\"}}",
                recovered.reason
            )
        ),
        1.0
    );
    // Kept byte for byte, under the documented name, beside the new one.
    assert!(
        fs::read(&recovered.moved_to).unwrap() == damaged,
        "the moved-aside file must be the damaged one, unchanged"
    );
    let aside = files_starting(dir, "outbox.sqlite3.corrupt-");
    assert_eq!(aside, vec![recovered.moved_to.clone()], "{aside:?}");
    assert_eq!(o.report.entries, 0);

    let a = o.outbox.append_event(event).unwrap();
    assert!(
        a.seq > first_seq_above,
        "seq {} after recovery must be above {first_seq_above}",
        a.seq
    );
    let (sha, jpeg) = image(99, 10_000);
    o.outbox
        .append_image(&sha, &jpeg, Priority::frame(1), Uuid::now_v7())
        .unwrap();
    drop(o);

    // No crash loop: the fresh database opens cleanly next time.
    let again = open(cfg);
    assert!(
        again.report.recovered.is_none(),
        "{:?}",
        again.report.recovered
    );
    assert_eq!(again.report.entries, 2);
    assert_eq!(again.report.last_seq, a.seq);
}

#[test]
fn truncated_mid_page() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populated(dir.path());
    let len = fs::metadata(&cfg.path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&cfg.path).unwrap();
    file.set_len(len / 2 + 1234).unwrap();
    drop(file);
    assert_recovers(&cfg, &["integrity_check", "corrupt"], 20);
}

#[test]
fn garbage_written_over_pages() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populated(dir.path());
    let len = fs::metadata(&cfg.path).unwrap().len();
    // Pages 2.. hold the tables' roots and the b-tree pages between the
    // images' overflow chains; 16 KiB of noise from page 2 on hits them.
    let mut file = OpenOptions::new().write(true).open(&cfg.path).unwrap();
    file.seek(SeekFrom::Start(4096)).unwrap();
    let (_, noise) = image(12345, 16 * 1024);
    file.write_all(&noise).unwrap();
    drop(file);
    assert_eq!(fs::metadata(&cfg.path).unwrap().len(), len);
    assert_recovers(&cfg, &["integrity_check", "corrupt", "not_a_database"], 20);
}

#[test]
fn garbage_over_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populated(dir.path());
    let mut file = OpenOptions::new().write(true).open(&cfg.path).unwrap();
    file.write_all(&[0xA5; 100]).unwrap();
    drop(file);
    assert_recovers(&cfg, &["not_a_database"], 20);
}

#[test]
fn zero_byte_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populated(dir.path());
    fs::File::create(&cfg.path).unwrap();
    assert_recovers(&cfg, &["empty_file"], 20);
}

#[test]
fn a_jpeg_where_the_database_should_be() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let photo = common::fetched("photos/pexels_double_decker_bus.jpg");
    fs::copy(photo, &cfg.path).unwrap();
    // No side file either: seq starts from 1.
    assert_recovers(&cfg, &["not_a_database"], 0);
}

#[test]
fn another_sqlite_database_is_not_written_into() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let other = rusqlite::Connection::open(&cfg.path).unwrap();
    other
        .execute_batch("CREATE TABLE precious (x); INSERT INTO precious VALUES (42);")
        .unwrap();
    drop(other);
    assert_recovers(&cfg, &["not_an_outbox"], 0);
}

#[test]
fn a_wal_without_its_database_is_moved_aside_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populated(dir.path());
    let wal = support::with_suffix(&cfg.path, "-wal");
    fs::write(&wal, b"stale wal of a deleted database").unwrap();
    fs::remove_file(&cfg.path).unwrap();
    let o = open(&cfg);
    let recovered = o.report.recovered.clone().unwrap();
    assert_eq!(recovered.reason, "orphan_files");
    assert!(
        !recovered.moved_to.exists(),
        "there was no database to move"
    );
    let moved_wal = support::with_suffix(&recovered.moved_to, "-wal");
    assert_eq!(
        fs::read(moved_wal).unwrap(),
        b"stale wal of a deleted database"
    );
    assert_eq!(o.report.entries, 0);
    assert!(
        o.report.last_seq >= 20,
        "the seq side file survives the database"
    );
}

#[test]
fn a_healthy_database_is_never_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populated(dir.path());
    for check in [
        edge_agent::outbox::StartupCheck::Quick,
        edge_agent::outbox::StartupCheck::Full,
        edge_agent::outbox::StartupCheck::Off,
    ] {
        let cfg = OutboxConfig {
            startup_check: check,
            ..cfg.clone()
        };
        let o = open(&cfg);
        assert!(o.report.recovered.is_none(), "{check:?}");
        assert_eq!(o.report.entries, 30);
    }
    assert!(files_starting(dir.path(), "outbox.sqlite3.corrupt").is_empty());
}

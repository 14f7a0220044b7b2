//! Central's roles killed under load, and PostgreSQL restarted under load
//! (issue 10, RELIABILITY.md).
//!
//! The `central` binary runs as four processes, one per role (bridge,
//! upload, worker, api), on one PostgreSQL (durable settings) and one
//! mosquitto, as in the cluster. Simulated devices keep sending inspections
//! the way the edge uplink does: each image is PUT until the upload role
//! answers 200 or 201, then the inspection's events are published QoS 1 and
//! re-published until the end-to-end ack arrives. A staff client keeps
//! reading the inspection list through the api.
//!
//! While that runs, each role in turn is killed with SIGKILL and started
//! again (the worker while it holds a job), then PostgreSQL is stopped for
//! 8 s (longer than a store call waits for a connection) and started again. At the end:
//! - every event a device saw acked, and every event it published, is
//!   stored, and each exactly once (the store holds exactly as many events
//!   as were published);
//! - every image the upload role acknowledged is in the object store;
//! - every inspection is processed, and the job the killed worker held was
//!   retried by the restarted worker (attempts >= 2);
//! - devices and the staff client got through again after every kill and
//!   after the database restart (clients reconnect).
//!
//! `cargo test -p central --test roles_killed -- --nocapture` prints the
//! figures (~90 s).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use central::store::{InspectionStatus, JobState, Store, StoreConfig, open_store};
use central::upload::object_key;
use chrono::Utc;
use inspection_core::wire::Sha256Hex;
use object_store::ObjectStoreExt;
use support::fleet_load::{Cluster, RoleProcess, Seen, device, noise_frames, staff_client};

const DEVICES: usize = 4;
/// `noise_frames` sends two frames per inspection.
const FRAMES_PER_INSPECTION: usize = 2;
const WORKER_ID: &str = "worker-a";
const PG_DOWN: Duration = Duration::from_secs(8);

/// The four roles as the cluster runs them: a process each.
const ROLES: [&str; 4] = ["bridge", "upload", "worker", "api"];

/// Waits until `what` grows past `from` (progress after a fault).
async fn wait_progress(what: &str, from: u64, deadline_s: u64, now: impl Fn() -> u64) -> Duration {
    let started = Instant::now();
    while now() <= from {
        assert!(
            started.elapsed() < Duration::from_secs(deadline_s),
            "no {what} within {deadline_s} s after the fault"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_role_killed_and_postgres_restarted_under_load_lose_nothing() {
    let mut cluster = Cluster::start(
        DEVICES,
        &format!(
            "id = \"{WORKER_ID}\"\npoll_interval_ms = 50\nheartbeat_s = 1\nlease_s = 3\n\
             retry_base_s = 1\nretry_max_s = 2\nimage_wait_s = 120\nimage_recheck_s = 1"
        ),
        "",
    )
    .await;
    let http = reqwest::Client::new();
    let mut roles: HashMap<&str, RoleProcess> = cluster
        .start_roles(&ROLES, &http)
        .await
        .into_iter()
        .map(|p| (p.role, p))
        .collect();
    let (db, ports, images) = (
        cluster.db.clone(),
        cluster.ports.clone(),
        cluster.images.clone(),
    );
    let (device_token, staff_token) = (cluster.device_token.clone(), cluster.staff_token.clone());
    let store: Arc<dyn Store> = open_store(&StoreConfig {
        url: db.clone(),
        ..StoreConfig::default()
    })
    .await
    .expect("open the store");

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for n in 0..DEVICES {
        load.spawn(device(
            n,
            ports.clone(),
            device_token.clone(),
            noise_frames(),
            seen.clone(),
            stop.clone(),
        ));
    }
    load.spawn(staff_client(
        ports.api,
        staff_token.clone(),
        Duration::from_millis(200),
        seen.clone(),
        stop.clone(),
    ));

    let acked_count = {
        let seen = seen.clone();
        move || seen.acked_count()
    };
    let uploaded_count = {
        let seen = seen.clone();
        move || {
            seen.uploaded
                .try_lock()
                .map(|a| a.len() as u64)
                .unwrap_or(0)
        }
    };
    let api_ok = {
        let seen = seen.clone();
        move || seen.api_ok.load(Ordering::Relaxed)
    };
    wait_progress("acked inspection", 0, 60, &acked_count).await;

    let mut figures = Vec::new();
    let mut held_job = None;
    for role in ROLES {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let p = roles.get_mut(role).unwrap();
        if role == "worker" {
            // Kill the worker while it holds a job: wait until one is
            // running under its lease, kill, and find it (the dead worker
            // can change nothing any more). Up to 10 tries, each a kill
            // under load.
            for attempt in 1..=10 {
                let started = Instant::now();
                while store
                    .job_stats(Utc::now())
                    .await
                    .map(|s| s.running == 0)
                    .unwrap_or(true)
                {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "the worker never ran a job"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                p.kill();
                // Every inspection published so far (the job's inspection
                // may not be acked to its device yet).
                let ids = seen.sent.lock().await.clone();
                let mut held = None;
                for id in &ids {
                    for job in store.inspection_jobs(*id).await.unwrap() {
                        if job.state == JobState::Running
                            && job.lease_owner.as_deref() == Some(WORKER_ID)
                        {
                            held = Some(job);
                        }
                    }
                }
                figures.push(format!(
                    "worker kill {attempt}: held job {:?}",
                    held.as_ref().map(|j| j.id)
                ));
                p.start();
                p.wait_ready(&http).await;
                if let Some(job) = held {
                    held_job = Some(job);
                    break;
                }
            }
            assert!(
                held_job.is_some(),
                "no kill in 10 caught the worker holding a job"
            );
            continue;
        }
        let (acked_before, uploaded_before, api_before) =
            (acked_count(), uploaded_count(), api_ok());
        p.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        p.start();
        p.wait_ready(&http).await;
        // Clients got through again after the restart.
        let after = match role {
            "bridge" => wait_progress("ack", acked_count(), 60, &acked_count).await,
            "upload" => {
                wait_progress("accepted upload", uploaded_count(), 60, &uploaded_count).await
            }
            _ => wait_progress("api answer", api_ok(), 60, &api_ok).await,
        };
        figures.push(format!(
            "{role} killed (acked {acked_before}, uploads {uploaded_before}, api answers {api_before}); \
             clients through again {:.1} s after it was ready",
            after.as_secs_f64()
        ));
    }

    // PostgreSQL stopped under load for longer than a store call waits for
    // a connection (`busy_timeout_ms`, 5 s), then started again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (acked_before, api_failed_before) =
        (acked_count(), seen.api_failed.load(Ordering::Relaxed));
    cluster.pg.stop();
    tokio::time::sleep(PG_DOWN).await;
    cluster.pg.restart();
    let acked_again = wait_progress("ack", acked_count(), 90, &acked_count).await;
    let api_again = wait_progress("api answer", api_ok(), 90, &api_ok).await;
    // The outage reached the services (they did not just sit it out).
    let bridge_store_errors = roles["bridge"]
        .metric(&http, "central_bridge_store_errors_total")
        .await;
    let worker_store_errors = roles["worker"]
        .metric(&http, "central_worker_errors_total{code=\"store\"}")
        .await;
    assert!(bridge_store_errors > 0.0, "the bridge saw no store error");
    assert!(worker_store_errors > 0.0, "the worker saw no store error");
    figures.push(format!(
        "postgres down {} s (acked before {acked_before}): acks again after {:.1} s, api after {:.1} s, \
         api failures during the outage {}, store errors: bridge {bridge_store_errors}, worker {worker_store_errors}",
        PG_DOWN.as_secs(),
        acked_again.as_secs_f64(),
        api_again.as_secs_f64(),
        seen.api_failed.load(Ordering::Relaxed) - api_failed_before
    ));

    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = load.join_next().await {
        done.expect("a device or the staff client failed");
    }

    // Every inspection processed, the held job retried.
    let inspections = seen.inspections.lock().await.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &inspections {
        loop {
            let record = store
                .inspection(*id)
                .await
                .unwrap()
                .expect("inspection stored");
            if record.status == InspectionStatus::Processed {
                assert_eq!(record.frames_received as usize, FRAMES_PER_INSPECTION);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "inspection {id} is {:?} ({:?}) after 120 s\nworker log:\n{}",
                record.status,
                record.status_detail,
                roles["worker"].log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let held = held_job.unwrap();
    let jobs = store.inspection_jobs(held.inspection_id).await.unwrap();
    let retried = jobs.iter().find(|j| j.id == held.id).expect("the held job");
    assert_eq!(retried.state, JobState::Done, "{retried:?}");
    assert!(
        retried.attempts >= 2,
        "the killed worker's job ran again: {retried:?}"
    );

    // Nothing acked lost, nothing stored twice.
    let published = seen.published.lock().await.clone();
    let acked = seen.acked.lock().await.clone();
    assert_eq!(
        published, acked,
        "every published event was acked in the end"
    );
    for id in &acked {
        assert!(
            store.event(*id).await.unwrap().is_some(),
            "acked event {id} is not stored"
        );
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.events as usize,
        published.len(),
        "each event stored exactly once"
    );
    assert_eq!(counts.inspections as usize, inspections.len());
    assert_eq!(counts.dead_letters, 0, "no dead letters");

    let objects = object_store::local::LocalFileSystem::new_with_prefix(&images).unwrap();
    let uploaded = seen.uploaded.lock().await.clone();
    for sha in &uploaded {
        let key = object_key(&Sha256Hex::new(sha).unwrap());
        objects
            .head(&key)
            .await
            .unwrap_or_else(|e| panic!("image {sha} acknowledged but missing: {e}"));
    }

    figures.push(format!(
        "bridge: duplicates re-acked {}",
        roles["bridge"]
            .metric(
                &http,
                "central_bridge_events_stored_total{result=\"duplicate\"}"
            )
            .await
    ));
    for line in &figures {
        println!("{line}");
    }
    println!(
        "{} inspections, {} events ({} re-published), {} images ({} upload retries), \
         api answers {} ok / {} failed; processes started: {}",
        inspections.len(),
        published.len(),
        seen.republished.load(Ordering::Relaxed),
        uploaded.len(),
        seen.upload_retries.load(Ordering::Relaxed),
        seen.api_ok.load(Ordering::Relaxed),
        seen.api_failed.load(Ordering::Relaxed),
        ROLES
            .iter()
            .map(|r| format!("{r} {}", roles[r].starts))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "held job {} done after {} attempts",
        retried.id, retried.attempts
    );
}

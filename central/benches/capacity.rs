//! Capacity of each central role per CPU core, the replicas the fleet peak
//! needs, and a bounded soak with each role's memory sampled (issue 10).
//!
//! ```text
//! cargo bench --profile dev -p central --bench capacity
//! CAPACITY_SECONDS=120 SOAK_SECONDS=1800 CAPACITY_DEVICES=8 cargo bench --profile dev -p central --bench capacity
//! ```
//!
//! Central runs as the cluster runs it, one `central run --roles X` process
//! per role (bridge, upload, worker, api) on a durable PostgreSQL and
//! mosquitto. `CAPACITY_DEVICES` simulated boards (default 6) send
//! inspections back to back as the edge uplink does (images PUT, then
//! events published until acked), alternating pickup and return of the
//! demo's vehicle (two cameras, two frames each, 1184x896 JPEGs with a
//! readable plate and painted damage on the return); the worker runs the
//! plate detector (ONNX Runtime), the plate reader and change detection
//! against the pickup. A staff client reads the inspection list.
//!
//! Each role's work is divided by the CPU time its process used in the
//! window (`/proc/<pid>/stat`): bridge events, upload images, worker
//! frames, api requests per core-second. Two windows of `CAPACITY_SECONDS`
//! (default 60): ingest (the boards at full speed, the worker stopped with
//! SIGSTOP so its jobs queue up), then processing (the boards quiet, the
//! worker alone with the queue: ONNX Runtime's threads spin while they wait
//! for a core, so a starved worker would look slower than it is). The
//! replicas for the peak (5,000 sites x 500 images/h, about 700 images/s)
//! follow at one core per replica run at 70%. The soak then runs every role
//! with a third of the boards for `SOAK_SECONDS` (default 300), sampling
//! each process's resident memory every 10 s: the growth from the first
//! sample to the last, and the largest.

#[path = "../tests/support/fleet_load.rs"]
mod fleet_load;
#[path = "../tests/support/mosquitto.rs"]
mod mosquitto;
#[path = "../tests/support/postgres.rs"]
mod postgres;
#[path = "../../shared/benches/support/record.rs"]
mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleet_load::{Cluster, Frame, Frames, RoleProcess, Seen, device, staff_client, tagged_jpeg};
use inspection_core::wire::InspectionKind;

/// The design's fleet peak read at its most demanding: 5,000 sites x 500
/// images/h.
const PEAK_IMAGES_PER_S: f64 = 5000.0 * 500.0 / 3600.0;
/// Events per image at the peak: a frame_selected per image, and an
/// inspection's started and completed shared by its images (4 here).
const EVENTS_PER_IMAGE: f64 = 1.5;
/// Staff API requests per image: a rough allowance (a reviewer opens an
/// inspection's detail, frames and findings: ~10 requests per 4 images).
const API_REQUESTS_PER_IMAGE: f64 = 2.5;
/// A replica is sized to run at this share of its core.
const TARGET_UTILISATION: f64 = 0.7;
const ROLES: [&str; 4] = ["bridge", "upload", "worker", "api"];
const COMMAND: &str = "cargo bench --profile dev -p central --bench capacity";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cache() -> PathBuf {
    central::paths::cache_dir()
        .expect("INSPECTION_CACHE_DIR, XDG_CACHE_HOME or HOME")
        .join("models")
}

/// The demo bay's vehicle frames (pickup and return, two cameras), read
/// once; each inspection sends two frames per camera, tagged so that every
/// upload has its own SHA-256.
fn bay_frames(dir: &Path) -> Frames {
    let shape = central::demo::BayShape::DEMO;
    let bay = central::demo::write_bay(
        &cache().join("photos/pexels_double_decker_bus.jpg"),
        Path::new(central::demo::PLATE_FONT),
        &dir.join("bay"),
        7,
        shape,
    )
    .expect("the demo bay (models/fetch.sh, fonts-dejavu-core)");
    let read = |folder: &Path| -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        // The middle of the vehicle's frames: the car is in view.
        let mid = shape.empty_before + shape.vehicle_frames / 2;
        files[mid - 1..=mid]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    };
    let mut views = Vec::new();
    for camera in &bay.cameras {
        for (kind, folder) in [
            (InspectionKind::Pickup, &camera.pickup_dir),
            (InspectionKind::Return, &camera.return_dir),
        ] {
            for bytes in read(folder) {
                let (width, height) = image::ImageReader::new(std::io::Cursor::new(&bytes))
                    .with_guessed_format()
                    .unwrap()
                    .into_dimensions()
                    .unwrap();
                views.push((
                    kind,
                    camera.id.clone(),
                    camera.position.clone(),
                    bytes,
                    width,
                    height,
                ));
            }
        }
    }
    let views = Arc::new(views);
    Arc::new(move |device, n| {
        let kind = if n % 2 == 0 {
            InspectionKind::Pickup
        } else {
            InspectionKind::Return
        };
        let frames = views
            .iter()
            .filter(|v| v.0 == kind)
            .enumerate()
            .map(|(i, (_, camera, position, bytes, width, height))| Frame {
                camera: camera.clone(),
                position: position.clone(),
                bytes: tagged_jpeg(bytes, &format!("bay-{device} inspection {n} frame {i}")),
                width: *width,
                height: *height,
            })
            .collect();
        (kind, frames)
    })
}

/// CPU seconds of every role, in `ROLES` order.
fn cpu(roles: &[RoleProcess]) -> Vec<f64> {
    roles.iter().map(RoleProcess::cpu_seconds).collect()
}

/// The ingest work counts, in `ROLES` order: events acked, images
/// accepted, (the worker's frames are read apart: it is stopped then), api
/// requests answered.
async fn work(seen: &Seen) -> Vec<f64> {
    vec![
        seen.acked_count() as f64,
        seen.uploaded_count() as f64,
        0.0,
        (seen.api_ok.load(Ordering::Relaxed) + seen.api_failed.load(Ordering::Relaxed)) as f64,
    ]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let devices = env("CAPACITY_DEVICES", 6) as usize;
    let warmup = Duration::from_secs(env("CAPACITY_WARMUP_SECONDS", 30));
    let window = Duration::from_secs(env("CAPACITY_SECONDS", 60));
    let soak = Duration::from_secs(env("SOAK_SECONDS", 300));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let plate_model = cache().join("platedet/platedet.onnx");
        assert!(
            plate_model.is_file(),
            "{} missing: run models/fetch.sh",
            plate_model.display()
        );
        let cluster = Cluster::start(
            devices + (devices / 3).max(1),
            "poll_interval_ms = 100\nimage_recheck_s = 1\nplate = { kind = \"local\", model = \"plate\" }",
            &format!("[detectors.plate]\nmodel = \"{}\"\n", plate_model.display()),
        )
        .await;
        let http = reqwest::Client::new();
        let roles = cluster.start_roles(&ROLES, &http).await;
        let (ports, device_token, staff_token) = (
            cluster.ports.clone(),
            cluster.device_token.clone(),
            cluster.staff_token.clone(),
        );
        let frames = bay_frames(cluster.dir.path());
        let seen = Arc::new(Seen::default());
        // Boards `first..first + count` and the staff client (polling every
        // `pause`), until the returned flag is set.
        let start_load = |first: usize, count: usize, pause: Duration| {
            let stop = Arc::new(AtomicBool::new(false));
            let mut load = tokio::task::JoinSet::new();
            for n in first..first + count {
                load.spawn(device(
                    n,
                    ports.clone(),
                    device_token.clone(),
                    frames.clone(),
                    seen.clone(),
                    stop.clone(),
                ));
            }
            load.spawn(staff_client(
                ports.api,
                staff_token.clone(),
                pause,
                seen.clone(),
                stop.clone(),
            ));
            (stop, load)
        };
        let stop_load = |(stop, mut load): (Arc<AtomicBool>, tokio::task::JoinSet<()>)| async move {
            stop.store(true, Ordering::Relaxed);
            while let Some(done) = load.join_next().await {
                done.expect("a board or the staff client failed");
            }
        };
        println!(
            "capacity: {devices} boards, warm-up {} s, windows {} s, soak {} s",
            warmup.as_secs(),
            window.as_secs(),
            soak.as_secs()
        );
        let units = ["events", "images", "frames", "requests"];
        let needed = [
            PEAK_IMAGES_PER_S * EVENTS_PER_IMAGE,
            PEAK_IMAGES_PER_S,
            PEAK_IMAGES_PER_S,
            PEAK_IMAGES_PER_S * API_REQUESTS_PER_IMAGE,
        ];
        // The table's rows, in `ROLES` order.
        let mut rows: [String; 4] = Default::default();
        let mut measure = |i: usize, done: f64, cpu_s: f64, secs: f64| {
            let per_core = done / cpu_s.max(1e-9);
            let replicas = (needed[i] / (per_core * TARGET_UTILISATION)).ceil();
            rows[i] = format!(
                "| {} | {done:.0} {} in {secs:.0} s | {cpu_s:.1} | {:.1} {}/s | {:.0} {}/s | {replicas:.0} |",
                ROLES[i], units[i], per_core, units[i], needed[i], units[i]
            );
            record::alone(
                COMMAND,
                &format!(
                    "{}: {} per CPU core-second (replicas for 700 images/s at 70%: {replicas:.0})",
                    ROLES[i], units[i]
                ),
                record::Figure::new(ROLES[i], per_core, &format!("{}/core-s", units[i])),
            );
        };

        // 1. Ingest: the boards and the staff client at full speed, the
        // worker stopped (SIGSTOP) so that its jobs queue up and it takes
        // no CPU from the roles measured.
        roles[2].pause();
        let load = start_load(0, devices, Duration::from_millis(20));
        tokio::time::sleep(warmup).await;
        let (cpu0, work0, t0) = (cpu(&roles), work(&seen).await, Instant::now());
        tokio::time::sleep(window).await;
        let (cpu1, work1, secs) = (cpu(&roles), work(&seen).await, t0.elapsed().as_secs_f64());
        stop_load(load).await;
        for i in [0, 1, 3] {
            measure(i, work1[i] - work0[i], cpu1[i] - cpu0[i], secs);
        }
        let ingest_rate = (work1[1] - work0[1]) / secs;

        // 2. Processing: the boards quiet, the worker alone on the machine
        // with the queued jobs (detection on ONNX Runtime, plate reading,
        // change detection against the pickup, the report).
        roles[2].resume();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (cpu0, frames0, t0) = (roles[2].cpu_seconds(), roles[2].metric(&http, "central_worker_frames_total").await, Instant::now());
        tokio::time::sleep(window).await;
        let (cpu1, frames1, secs) = (roles[2].cpu_seconds(), roles[2].metric(&http, "central_worker_frames_total").await, t0.elapsed().as_secs_f64());
        measure(2, frames1 - frames0, cpu1 - cpu0, secs);

        println!();
        println!("| role | work | CPU s | per core-second | needed at the peak | replicas (1 core, 70%) |");
        println!("|---|---:|---:|---:|---:|---:|");
        for row in &rows {
            println!("{row}");
        }
        println!(
            "(ingest ran at {ingest_rate:.1} images/s on this machine with the worker stopped)"
        );

        // 3. Soak: every role on, a third of the boards at full speed (the
        // worker keeps up with part of it), memory sampled every 10 s.
        let soak_boards = (devices / 3).max(1);
        let load = start_load(devices, soak_boards, Duration::from_millis(200));
        let mut samples: Vec<Vec<u64>> = Vec::new();
        let (images0, frames0) = (seen.uploaded_count(), roles[2].metric(&http, "central_worker_frames_total").await);
        let soak_start = Instant::now();
        while soak_start.elapsed() < soak {
            samples.push(roles.iter().map(RoleProcess::rss_bytes).collect());
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        samples.push(roles.iter().map(RoleProcess::rss_bytes).collect());
        let (images1, frames1) = (seen.uploaded_count(), roles[2].metric(&http, "central_worker_frames_total").await);
        stop_load(load).await;
        println!();
        println!(
            "soak {} s, {soak_boards} boards ({} samples): {} images accepted, {:.0} frames processed",
            soak.as_secs(),
            samples.len(),
            images1 - images0,
            frames1 - frames0
        );
        // Growth over the whole soak, and over its second half alone: a
        // process still warming up (allocator arenas, ONNX Runtime's memory
        // pattern) grows early and then holds; a leak keeps growing.
        println!("| role | RSS first | RSS at half | RSS last | growth | second half | largest |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for i in 0..ROLES.len() {
            let first = samples[0][i];
            let half = samples[samples.len() / 2][i];
            let last = samples[samples.len() - 1][i];
            let largest = samples.iter().map(|s| s[i]).max().unwrap();
            let growth = (last as f64 / first as f64 - 1.0) * 100.0;
            let second_half = (last as f64 / half as f64 - 1.0) * 100.0;
            println!(
                "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {growth:+.1}% | {second_half:+.1}% | {:.1} MiB |",
                ROLES[i],
                mib(first),
                mib(half),
                mib(last),
                mib(largest)
            );
            record::alone(
                COMMAND,
                &format!(
                    "{}: resident memory growth over a {} s soak",
                    ROLES[i],
                    soak.as_secs()
                ),
                record::Figure::new(ROLES[i], growth, "%"),
            );
        }
        let jobs = roles[2].metric(&http, "central_worker_job_duration_seconds_count").await;
        let job_s = roles[2].metric(&http, "central_worker_job_duration_seconds_sum").await;
        println!("worker: {jobs:.0} jobs, {:.2} s each on average", job_s / jobs.max(1.0));
        // Where the worker's time goes.
        for line in roles[2].metrics_text(&http).await.lines().filter(|l| {
            !l.starts_with('#')
                && (l.contains("_sum") || l.contains("_count") || l.contains("plate_reads"))
                && !l.contains("bucket")
        }) {
            println!("  {line}");
        }
        if std::env::var_os("CAPACITY_LOGS").is_some() {
            for role in &roles {
                let log = role.log_text();
                let lines: Vec<&str> = log.lines().collect();
                println!("--- {} log (last 40 lines) ---", role.role);
                for line in &lines[lines.len().saturating_sub(40)..] {
                    println!("{line}");
                }
            }
        }
        drop(roles);
        drop(cluster);
    });
}

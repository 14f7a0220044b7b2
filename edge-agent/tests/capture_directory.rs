//! The directory source over the real fetched photos, and over broken files.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use edge_agent::capture::{
    CameraConfig, CaptureError, CaptureMetrics, DirectoryConfig, Frame, FrameSource, RetryConfig,
    SourceConfig, SourceContext, Stop, VirtualClock, open_source,
};

const BUS: &str = "photos/pexels_double_decker_bus.jpg";
const SEDAN: &str = "photos/licenseplate_motion.jpg";

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn camera(path: &Path, fps: f64, looped: bool) -> CameraConfig {
    CameraConfig {
        id: "cam-left".into(),
        position: "left".into(),
        source: SourceConfig::Directory(DirectoryConfig {
            path: path.to_path_buf(),
            fps,
            looped,
        }),
        retry: RetryConfig::default(),
        anonymise_faces: true,
    }
}

fn context(clock: Arc<VirtualClock>) -> SourceContext {
    SourceContext {
        clock,
        stop: Stop::new(),
        metrics: CaptureMetrics::new(),
    }
}

fn copy(from: &str, dir: &Path, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(common::fetched(from)).unwrap();
    std::fs::write(dir.join(name), &bytes).unwrap();
    bytes
}

fn take(source: &mut dyn FrameSource, n: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            source
                .next_frame()
                .unwrap()
                .unwrap_or_else(|| panic!("ended after {i} frames"))
        })
        .collect()
}

#[test]
fn real_photos_come_in_name_order_with_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Written in the opposite order of their names: order comes from names.
    let sedan = copy(SEDAN, dir.path(), "2_sedan.jpg");
    let bus = copy(BUS, dir.path(), "1_bus.jpg");
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let mut source = open_source(&camera(dir.path(), 0.0, false), &ctx).unwrap();

    let frames = take(&mut source, 2);
    assert!(source.next_frame().unwrap().is_none());
    assert!(source.next_frame().unwrap().is_none(), "stays ended");

    for (frame, (index, bytes)) in frames.iter().zip([(0, &bus), (1, &sedan)]) {
        assert_eq!(frame.index, index);
        assert_eq!(frame.camera.as_str(), "cam-left");
        assert_eq!(frame.jpeg.as_deref(), Some(bytes.as_slice()));
        let decoded = image::load_from_memory(bytes).unwrap().into_rgb8();
        assert_eq!(*frame.image, decoded);
    }
    assert_eq!(ctx.metrics.frames_of("cam-left"), 2);
    assert!(
        source
            .describe()
            .contains(&dir.path().display().to_string())
    );
}

#[test]
fn loop_replays_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bus = copy(BUS, dir.path(), "a.jpg");
    let sedan = copy(SEDAN, dir.path(), "b.jpg");
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let mut source = open_source(&camera(dir.path(), 0.0, true), &ctx).unwrap();

    let frames = take(&mut source, 5);
    let bytes: Vec<&[u8]> = frames.iter().map(|f| f.jpeg.as_deref().unwrap()).collect();
    assert_eq!(bytes, [&bus[..], &sedan, &bus, &sedan, &bus]);
    let indices: Vec<u64> = frames.iter().map(|f| f.index).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4]);
}

#[test]
fn fps_paces_the_replay_and_zero_does_not() {
    let dir = tempfile::tempdir().unwrap();
    copy(BUS, dir.path(), "a.jpg");
    copy(SEDAN, dir.path(), "b.jpg");

    let clock = Arc::new(VirtualClock::new(epoch()));
    let ctx = context(clock.clone());
    let mut paced = open_source(&camera(dir.path(), 4.0, true), &ctx).unwrap();
    let frames = take(&mut paced, 4);
    let offsets: Vec<i64> = frames
        .iter()
        .map(|f| (f.captured_at - epoch()).num_milliseconds())
        .collect();
    assert_eq!(offsets, [0, 250, 500, 750]);
    assert_eq!(clock.sleeps(), [Duration::from_millis(250); 3]);

    let clock = Arc::new(VirtualClock::new(epoch()));
    let mut unpaced = open_source(&camera(dir.path(), 0.0, true), &context(clock.clone())).unwrap();
    take(&mut unpaced, 4);
    assert!(clock.sleeps().is_empty());
}

#[test]
fn broken_files_are_skipped_counted_and_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let bus = copy(BUS, dir.path(), "01_bus.jpg");
    // Cut in half: `image` decodes this without an error (the bottom comes
    // out grey), which is why the source checks the end-of-image marker.
    let half = &bus[..bus.len() / 2];
    assert!(
        image::load_from_memory(half).is_ok(),
        "image now refuses truncated JPEGs; the EOI check could be revisited"
    );
    std::fs::write(dir.path().join("02_truncated.jpg"), half).unwrap();
    std::fs::write(dir.path().join("03_empty.jpg"), b"").unwrap();
    std::fs::write(dir.path().join("04_notes.txt"), b"replay of bay 3\n").unwrap();
    let sedan = copy(SEDAN, dir.path(), "05_sedan.jpg");
    // Both markers present, nothing decodable between them.
    std::fs::write(
        dir.path().join("06_garbage.jpg"),
        [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9],
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("07_subdir.jpg")).unwrap();

    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let mut source = open_source(&camera(dir.path(), 0.0, false), &ctx).unwrap();
    let frames = take(&mut source, 2);
    assert!(source.next_frame().unwrap().is_none());

    assert_eq!(frames[0].jpeg.as_deref(), Some(&bus[..]));
    assert_eq!(frames[1].jpeg.as_deref(), Some(&sedan[..]));
    assert_eq!(
        frames.iter().map(|f| f.index).collect::<Vec<_>>(),
        [0, 1],
        "skipped files take no index"
    );
    let m = &ctx.metrics;
    for reason in ["truncated", "empty", "not_jpeg", "decode"] {
        assert_eq!(m.errors_of("cam-left", reason), 1, "{reason}");
    }
    assert_eq!(m.frames_of("cam-left"), 2);
}

#[test]
fn a_loop_without_usable_files_is_an_error_not_a_spin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jpg"), b"").unwrap();
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let mut looped = open_source(&camera(dir.path(), 0.0, true), &ctx).unwrap();
    assert!(matches!(
        looped.next_frame(),
        Err(CaptureError::NoUsableFiles { .. })
    ));
    let mut once = open_source(&camera(dir.path(), 0.0, false), &ctx).unwrap();
    assert!(once.next_frame().unwrap().is_none());
    assert_eq!(ctx.metrics.errors_of("cam-left", "empty"), 2);
}

#[test]
fn a_missing_directory_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-here");
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let Err(error) = open_source(&camera(&missing, 0.0, false), &ctx) else {
        panic!("opened a missing directory")
    };
    assert!(matches!(error, CaptureError::Directory { .. }), "{error:?}");
    assert!(error.to_string().contains("not-here"), "{error}");
}

#[test]
fn stop_ends_a_paced_replay() {
    let dir = tempfile::tempdir().unwrap();
    copy(BUS, dir.path(), "a.jpg");
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let mut source = open_source(&camera(dir.path(), 1.0, true), &ctx).unwrap();
    take(&mut source, 1);
    ctx.stop.stop();
    assert!(matches!(source.next_frame(), Err(CaptureError::Stopped)));
}

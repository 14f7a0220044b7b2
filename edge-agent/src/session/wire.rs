//! From tracker outputs to the wire's `EventBody`, and the content address of a JPEG.

use inspection_core::wire::{
    EventBody, FrameQuality, ImageRef, MAX_TEXT_LEN, Sha256Hex, WireDetection,
};
use inspection_core::yolo::Detection;
use sha2::{Digest, Sha256};

use super::SessionError;
use super::tracker::SessionOutput;

/// The media type of every image the agent ships.
pub const JPEG: &str = "image/jpeg";

/// The [`ImageRef`] of an encoded JPEG: its SHA-256 (the content address
/// central stores it under), size and pixel dimensions.
pub fn jpeg_image_ref(jpeg: &[u8], width: u32, height: u32) -> Result<ImageRef, SessionError> {
    if jpeg.is_empty() || width == 0 || height == 0 {
        return Err(SessionError::EmptyImage {
            bytes: jpeg.len(),
            width,
            height,
        });
    }
    let digest: [u8; 32] = Sha256::digest(jpeg).into();
    Ok(ImageRef {
        sha256: Sha256Hex::from_digest(&digest),
        bytes: jpeg.len() as u64,
        width,
        height,
        content_type: JPEG.to_owned(),
    })
}

/// A pre-screen detection as it travels on the wire. Never fails, so one odd
/// detection cannot hold back a frame: the score is clamped to `[0, 1]`
/// (NaN becomes 0), the class id saturates, and a label the wire would
/// refuse (empty or over 64 characters) is replaced by `class_<id>` or cut.
pub fn wire_detection(label: &str, detection: &Detection) -> WireDetection {
    let score = if detection.score.is_nan() {
        0.0
    } else {
        detection.score.clamp(0.0, 1.0)
    };
    let class_id = u32::try_from(detection.class_id).unwrap_or(u32::MAX);
    let label = if label.is_empty() {
        format!("class_{class_id}")
    } else {
        label.chars().take(MAX_TEXT_LEN).collect()
    };
    WireDetection {
        label,
        class_id,
        score,
        bbox: detection.bbox,
    }
}

impl<T> SessionOutput<T> {
    /// The wire body of this output. `image` is the selected frame's
    /// [`ImageRef`] (see [`jpeg_image_ref`]): required for `FrameSelected`,
    /// ignored otherwise. The pipeline wraps the body in an
    /// [`Event`](inspection_core::wire::Event) with its own `msg_id`, `seq`
    /// and `at`, and `inspection_id` from [`inspection_id`](Self::inspection_id).
    pub fn to_event_body(&self, image: Option<&ImageRef>) -> Result<EventBody, SessionError> {
        Ok(match self {
            Self::Started {
                kind,
                trigger,
                cameras,
                ..
            } => EventBody::InspectionStarted {
                kind: *kind,
                trigger: trigger.clone(),
                cameras: cameras.clone(),
                // Filled in by the pipeline, which knows the agent and model.
                agent_version: None,
                models: Vec::new(),
            },
            Self::FrameSelected {
                inspection_id,
                camera,
                captured_at,
                quality,
                detections,
                rank,
                ..
            } => {
                let image = image.ok_or(SessionError::MissingImage {
                    inspection_id: *inspection_id,
                    rank: *rank,
                })?;
                EventBody::FrameSelected {
                    camera: camera.clone(),
                    captured_at: *captured_at,
                    image: image.clone(),
                    quality: FrameQuality {
                        sharpness: quality.sharpness,
                        mean_luma: quality.mean_luma,
                        dark_fraction: quality.dark_fraction,
                        bright_fraction: quality.bright_fraction,
                    },
                    detections: detections
                        .iter()
                        .map(|(label, d)| wire_detection(label, d))
                        .collect(),
                    rank: *rank,
                    // Set by the pipeline, which runs the anonymisation.
                    anonymised: None,
                }
            }
            Self::Completed { reason, frames, .. } => EventBody::InspectionCompleted {
                reason: *reason,
                frames: *frames,
                // Filled in by the pipeline, which has the images' hashes.
                images: Vec::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use inspection_core::BBox;

    use super::*;

    #[test]
    fn image_ref_hashes_the_bytes() {
        let r = jpeg_image_ref(b"abc", 4, 3).unwrap();
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            r.sha256.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            (r.bytes, r.width, r.height, r.content_type.as_str()),
            (3, 4, 3, JPEG)
        );
        assert!(matches!(
            jpeg_image_ref(b"", 4, 3),
            Err(SessionError::EmptyImage { .. })
        ));
        assert!(jpeg_image_ref(b"abc", 0, 3).is_err());
    }

    #[test]
    fn odd_detections_become_valid_wire_detections() {
        let d = Detection {
            bbox: BBox::new(1.0, 2.0, 3.0, 4.0),
            score: f32::NAN,
            class_id: usize::MAX,
            mask_coeffs: vec![0.5; 32],
        };
        let w = wire_detection("", &d);
        assert_eq!(
            (w.label.as_str(), w.class_id, w.score),
            ("class_4294967295", u32::MAX, 0.0)
        );
        let long = "x".repeat(100);
        let w = wire_detection(
            &long,
            &Detection {
                score: 1.5,
                class_id: 2,
                ..d
            },
        );
        assert_eq!((w.label.len(), w.class_id, w.score), (64, 2, 1.0));
    }
}

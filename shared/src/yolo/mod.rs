//! YOLOv8 pre- and post-processing for Ultralytics ONNX exports.
//!
//! The edge agent (tract) and the central service (ONNX Runtime) run the same
//! models; they must letterbox frames and read the heads identically or the
//! two sides disagree about what is in a photo. Everything here works on
//! plain slices (`&[f32]` plus a shape `&[usize]`) so either runtime can feed
//! it without this crate linking one.
//!
//! Typical flow:
//! 1. [`preprocess`] an [`image::RgbImage`] into an NCHW `[1, 3, S, S]` tensor
//!    and keep the returned [`Letterbox`];
//! 2. run the model;
//! 3. [`decode`] the first output with the class count from [`ClassNames`]
//!    (parsed from the model's `names` metadata) and a [`DecodeConfig`];
//! 4. for segmentation models, wrap the second output in a [`Proto`] and call
//!    [`mask_for`] per [`Detection`].
//!
//! No function here panics on malformed tensors, shapes or metadata: they are
//! reported as [`YoloError`]s, and non-finite values are skipped.

mod decode;
mod error;
mod letterbox;
mod mask;
mod names;
mod nms;

pub use decode::{
    DecodeConfig, Detection, HeadKind, MASK_COEFFS, MAX_DETECTIONS_LIMIT, MAX_NMS_CANDIDATES,
    OutputLayout, decode, decode_batch, decode_item, decode_with_layout,
};
pub use error::YoloError;
pub use letterbox::{
    DEFAULT_INPUT_SIZE, LETTERBOX_FILL, Letterbox, MAX_INPUT_SIZE, check_input_size,
    fixed_input_size, preprocess, preprocess_into, resolve_input_size,
};
pub use mask::{Mask, Proto, mask_for};
pub use names::{ClassNames, ModelMetadata, Task, parse_imgsz};
pub use nms::{nms_sorted, non_max_suppression};

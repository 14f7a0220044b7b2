//! The one error type of the YOLO module.

use thiserror::Error;

/// Everything that can go wrong while preparing a frame or reading a model's
/// outputs and metadata. The messages name expected and actual values so a
/// log line is enough to tell a wrong model from a wrong configuration.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum YoloError {
    /// The source image has no pixels.
    #[error("image is {width}x{height}; it must be at least 1x1")]
    EmptyImage {
        /// Width of the offending image.
        width: u32,
        /// Height of the offending image.
        height: u32,
    },

    /// The model input size is zero or absurdly large.
    #[error("model input size {size} is outside 1..={max}")]
    InvalidInputSize {
        /// The requested square size.
        size: u32,
        /// The largest size accepted.
        max: u32,
    },

    /// A tensor shape has the wrong number of dimensions.
    #[error("{what} has shape {actual:?} but {expected} was expected")]
    ShapeRank {
        /// Which tensor (e.g. "detection output").
        what: &'static str,
        /// The layout that was expected, in words.
        expected: &'static str,
        /// The shape that was passed.
        actual: Vec<usize>,
    },

    /// The output's channel count fits neither a detect nor a seg head for
    /// the given number of classes (often: `names` metadata that does not
    /// match the model, or a transposed `[1, N, C]` tensor).
    #[error(
        "output has {channels} channels but 4 + {num_classes} classes (+ {mask_coeffs} mask coefficients) were expected: {detect} for a detect head or {segment} for a seg head"
    )]
    ChannelMismatch {
        /// The channel count found in the shape.
        channels: usize,
        /// The class count the caller passed.
        num_classes: usize,
        /// The mask coefficient count of a seg head.
        mask_coeffs: usize,
        /// `4 + num_classes`.
        detect: usize,
        /// `4 + num_classes + mask_coeffs`.
        segment: usize,
    },

    /// The data slice does not hold as many values as its shape says.
    #[error("{what} has shape {shape:?} ({expected} values) but {actual} values were passed")]
    DataLength {
        /// Which tensor.
        what: &'static str,
        /// The shape that was passed.
        shape: Vec<usize>,
        /// The product of the shape.
        expected: usize,
        /// The length of the data slice.
        actual: usize,
    },

    /// The product of a shape does not fit in memory addresses.
    #[error("{what} shape {shape:?} is too large")]
    ShapeOverflow {
        /// Which tensor.
        what: &'static str,
        /// The shape that was passed.
        shape: Vec<usize>,
    },

    /// A batch index past the end of the batch.
    #[error("batch index {index} is out of range for a batch of {batch}")]
    BatchIndex {
        /// The requested index.
        index: usize,
        /// The batch size in the shape.
        batch: usize,
    },

    /// One letterbox per batch item is needed.
    #[error("{letterboxes} letterbox(es) were passed for a batch of {batch}")]
    LetterboxCount {
        /// How many were passed.
        letterboxes: usize,
        /// The batch size in the shape.
        batch: usize,
    },

    /// A model must have at least one class.
    #[error("the model has no classes")]
    NoClasses,

    /// A [`DecodeConfig`](super::DecodeConfig) failed validation.
    #[error("invalid decode configuration: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),

    /// The detection carries a different number of mask coefficients than
    /// the prototype tensor has channels (or none: a detect head).
    #[error("detection has {coeffs} mask coefficients but the prototypes have {proto_channels}")]
    MaskCoeffMismatch {
        /// Coefficients on the detection.
        coeffs: usize,
        /// Channels of the prototype tensor.
        proto_channels: usize,
    },

    /// A box with no pixels or non-finite corners where a real box is needed.
    #[error("box {x1},{y1},{x2},{y2} is empty or not finite")]
    DegenerateBox {
        /// Left edge.
        x1: f32,
        /// Top edge.
        y1: f32,
        /// Right edge.
        x2: f32,
        /// Bottom edge.
        y2: f32,
    },

    /// The region of a mask is too large to allocate (over 2^28 pixels).
    #[error("a {width}x{height} mask is too large")]
    MaskTooLarge {
        /// Columns of the region.
        width: u32,
        /// Rows of the region.
        height: u32,
    },

    /// The `names` metadata string is not a Python dict of int to str.
    #[error("malformed class names at byte {position}: {reason}")]
    MalformedNames {
        /// Byte offset into the metadata string.
        position: usize,
        /// What was wrong there.
        reason: String,
    },

    /// The class ids in `names` are not exactly `0..n`.
    #[error("class ids must be 0..{len} without gaps or repeats: {problem}")]
    ClassIds {
        /// The number of entries found.
        len: usize,
        /// The first problem found (a gap or a repeat).
        problem: String,
    },

    /// A metadata value other than `names` could not be read.
    #[error("metadata `{key}` has unreadable value {value:?}")]
    MalformedMetadata {
        /// The metadata key.
        key: String,
        /// The raw value.
        value: String,
    },

    /// The metadata has no `names` entry.
    #[error("model metadata has no `names` entry")]
    MissingNames,
}

//! `inspection-core`: what the edge agent and the central service must agree on.
//!
//! Wire types and MQTT topics ([`wire`], [`topic`], [`ids`]), YOLOv8
//! pre/post-processing for Ultralytics ONNX exports ([`yolo`]), frame quality
//! metrics ([`quality`]), European licence plate formats ([`plate`]) and the
//! strict decoding of images that arrive over the network ([`image_check`]).
//!
//! Architecture invariant: this crate is pure. It has no async runtime, does no
//! network or file I/O, reads no clock and links no inference runtime; callers
//! pass bytes, pixels and tensors in and get plain data out. That keeps it
//! testable in isolation and identical on the boards and in the cluster.

pub mod compare;
pub mod config;
pub mod geometry;
pub mod ids;
pub mod image_check;
pub mod plate;
pub mod quality;
pub mod topic;
pub mod wire;
pub mod yolo;

pub use geometry::BBox;
pub use ids::{DeviceId, IdError, SiteId};

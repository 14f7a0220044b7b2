//! Strict image decoding: a body is a whole JPEG or PNG, or it is refused.
//! The checks live in `inspection_core::image_check`, shared with the upload
//! role and run by the `image_decode` fuzz target.

pub use inspection_core::image_check::{ImageProblem, decode_image};

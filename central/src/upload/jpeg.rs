//! Is this body a complete, decodable JPEG? The checks live in
//! `inspection_core::image_check` (shared with the inference role and run by
//! the `image_decode` fuzz target); the upload role refuses with its codes.

pub use inspection_core::image_check::{JpegProblem, check_jpeg};

//! The `worker` role: claims processing jobs and turns a completed inspection into findings, a plate and a comparison.

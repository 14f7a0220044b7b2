//! The writer chain: routing, grounding, the record of attempts.

/// The chain of writers (filled in by the chain work).
pub struct WriterChain {}

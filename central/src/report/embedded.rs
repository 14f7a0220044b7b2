//! The embedded writer: a small instruction model (GGUF) run on the CPU
//! with `candle`. Built by the embedded-model work; see report/mod.rs.

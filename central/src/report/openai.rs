//! The OpenAI-compatible chat-completions writer (self-hosted endpoint and
//! GPT-4o, Azure OpenAI included). See report/mod.rs.

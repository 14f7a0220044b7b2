//! The `llm` role: the embedded model served over the OpenAI-compatible
//! chat-completions API.

//! The `inference` role: detection served over HTTP (`POST /v1/detect`) with dynamic batching, and the client the worker uses.

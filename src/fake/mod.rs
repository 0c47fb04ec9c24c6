//! A fake DAP server (axum on loopback) for tests, the demo and the benchmark.

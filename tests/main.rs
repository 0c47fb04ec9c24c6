//! Integration tests: one binary, every test on its own database and fake DAP server.

mod support;

mod engine;
mod schema;

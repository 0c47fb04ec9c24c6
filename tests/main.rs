//! Integration tests: one binary, every test on its own database and fake DAP server.

mod support;

mod adopt;
mod architecture;
mod cli;
mod control;
mod crash;
mod daemon;
mod dap;
mod engine;
mod evolve;
mod export;
mod files;
mod formats;
mod guard;
mod history;
mod monitoring;
mod official;
mod page;
mod preserve;
mod replicas;
mod robust;
mod schema;
mod startup;

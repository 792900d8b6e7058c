//! Integration tests: each one drives the real `sluice` binary in a temporary workspace.

mod support;

mod cache;
mod classify;
mod cli;
mod data;
mod errors;
mod evaluate;
mod failures;
mod robustness;
mod scheduler;
mod schema;
mod serve;
mod train;

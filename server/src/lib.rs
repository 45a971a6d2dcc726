//! The forgetlab web server: pages (rendered by `app`), the JSON API, SQLite storage, the job
//! queue with its worker protocol, local worker processes, and live progress.
//!
//! Not here: training (the `trainer` crate's worker, a separate process that may crash without
//! taking the site down) and the analysis itself (`dynamics`).

pub mod admin;
pub mod analysis;
pub mod assets;
pub mod auth;
pub mod backup;
pub mod codec;
pub mod config;
pub mod db;
pub mod disk;
pub mod executor;
pub mod progress;
pub mod queue;
pub mod records;
pub mod registry;
pub mod routes;
pub mod service;
pub mod startup;
pub mod studies;
pub mod workers;

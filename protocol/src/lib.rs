//! The shared vocabulary of forgetlab's parts.
//!
//! - [`spec`]: what a user asks to train, and the one place its validity is decided;
//! - [`views`]: what the JSON API and the pages show (runs, jobs, datasets, samples);
//! - [`sampling`]: training schedules, which samples each epoch shows;
//! - [`worker`]: the messages between the server and a training worker;
//! - [`pack`]: the little-endian array packing of per-epoch records;
//! - [`wire`]: the binary form of an epoch upload.
//!
//! Compiled into the server, the worker and the browser bundle, so it carries no heavy
//! dependency: serde, and `dynamics` (pure Rust) for the one list of per-sample scores.

pub mod auth;
pub mod pack;
pub mod sampling;
pub mod spec;
pub mod study;
pub mod views;
pub mod wire;
pub mod worker;

pub use dynamics::Direction;
pub use sampling::{Keep, Plan, RbfKernel, SampleScore, Sampling, SourceRuns};
pub use spec::{Arch, Augment, Device, ExperimentSpec, FieldErrors, Hyper, Measure, Optimizer, Preprocess, Queueing, RunRequest, Schedule, WarmupBackbone};
pub use views::*;

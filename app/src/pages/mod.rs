//! One module per page, named after its URL.

pub mod account;
pub mod compare;
pub mod jobs;
pub mod launch;
pub mod run;
pub mod runs;
pub mod samples;
pub mod studies;

use leptos::prelude::*;

/// What a page shows when its data could not be loaded.
pub fn load_error(what: &str, error: impl std::fmt::Display) -> AnyView {
    view! { <p class="error" role="alert">{format!("Could not load {what}: {error}")}</p> }.into_any()
}

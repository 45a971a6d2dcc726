//! One module per page, named after its URL.

pub mod account;
pub mod compare;
pub mod datasets;
pub mod jobs;
pub mod launch;
pub mod run;
pub mod runs;
pub mod samples;
pub mod studies;

use leptos::prelude::*;

/// A server function's error as the server worded it, without the transport's "error running
/// server function" wrapping.
pub fn error_message(error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    text.strip_prefix("error running server function: ").unwrap_or(&text).to_owned()
}

/// What a form says when its server function failed: the server's message, or, when the
/// request never reached the server (network down, server restarting), that `not_done` (e.g.
/// "your run was not queued") and what to do.
pub fn form_error(not_done: &str, error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    if text.starts_with("error reaching server to call server function") {
        return format!("The server could not be reached, so {not_done}: check the connection and submit again.");
    }
    error_message(text)
}

/// What a page shows when its data could not be loaded: the server's own message (without
/// the transport's "error running server function" wrapping) and a way back.
pub fn load_error(what: &str, error: impl std::fmt::Display) -> AnyView {
    let message = error_message(error);
    view! {
        <div class="load-error">
            <p class="error" role="alert">{format!("Could not load {what}: {message}.")}</p>
            <p><a href="/">"Back to the runs"</a> " · " <a href="/studies">"Studies"</a></p>
        </div>
    }
    .into_any()
}

//! Live progress from the server's event streams (server-sent events). In the browser only:
//! the server-rendered page already shows the latest state, and a reload shows it again.

use protocol::Progress;

/// Calls `on_progress` for every progress event on `url` until the calling component is
/// unmounted. The browser's EventSource reconnects by itself after a network failure, and the
/// server starts every stream with the current state, so a reconnecting page catches up.
#[cfg(feature = "hydrate")]
pub fn subscribe(url: &str, on_progress: impl Fn(Progress) + 'static) {
    use leptos::prelude::on_cleanup;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    let Ok(source) = web_sys::EventSource::new(url) else {
        leptos::logging::warn!("cannot open the event stream {url}");
        return;
    };
    let callback = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
        let parsed = event.data().as_string().and_then(|text| serde_json::from_str::<Progress>(&text).ok());
        if let Some(progress) = parsed {
            on_progress(progress);
        }
    });
    source.set_onmessage(Some(callback.as_ref().unchecked_ref()));
    let held = send_wrapper::SendWrapper::new((source, callback));
    on_cleanup(move || held.0.close());
}

/// On the server there is nothing to subscribe to: the page renders the stored state.
#[cfg(not(feature = "hydrate"))]
pub fn subscribe(_url: &str, _on_progress: impl Fn(Progress) + 'static) {}

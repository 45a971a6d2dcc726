//! Resources whose server-rendered value reaches the browser as JSON read by
//! `serde_json::from_slice`, the reader the server functions' responses use too.
//!
//! Leptos' default resource codec reads with `serde_json::from_str`, a second reader type:
//! every type a page loads then gets two copies of its deserializer in the wasm bundle (about
//! 150 kB of the release bundle, measured in bench/RESULTS.md). One reader, one copy.

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON, read as bytes.
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, Self::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, Self::Error> {
        serde_json::from_slice(text.as_bytes())
    }
}

/// `Resource::new` with [`Json`]: loads `fetcher(source())` on the server, hands the value
/// to the browser in the page, and reloads when `source` changes.
#[track_caller]
pub fn resource<T, S, Fut>(source: impl Fn() -> S + Send + Sync + 'static, fetcher: impl Fn(S) -> Fut + Send + Sync + 'static) -> Resource<T, Json>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Send + Sync + Clone + PartialEq + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

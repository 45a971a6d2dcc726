//! `ActionForm` without serde_qs in the browser.
//!
//! Leptos' own `ActionForm` turns a submitted form into the server function's arguments
//! with serde_qs, whose nested-query deserializer took 60 kB of the release wasm (about 3 %,
//! bench/RESULTS.md "Pages"). forgetlab's forms are flat: every field is one name with one
//! text value, and every server function that a form calls takes text and numbers. [`Fields`]
//! reads such name/value pairs into the arguments with serde's own small value
//! deserializers. The form posts to the same URL and works the same without JavaScript.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::server_fn::error::{IntoAppError, ServerFnErrorErr};
use serde::de::value::{Error, MapDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

/// A `<form method="post">` that calls `action`'s server function when JavaScript runs:
/// the drop-in replacement for Leptos' `ActionForm` (same props, `attr:` passes through).
#[component]
pub fn ActionForm<S>(action: ServerAction<S>, children: Children) -> impl IntoView
where
    S: DeserializeOwned + ServerFn + Clone + Send + Sync + 'static,
    S::Output: Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    let on_submit = move |ev: SubmitEvent| {
        if ev.default_prevented() {
            return;
        }
        ev.prevent_default();
        match form_fields(&ev).and_then(Fields::read::<S>) {
            Ok(input) => {
                action.dispatch(input);
            }
            Err(message) => {
                action.value().set(Some(Err(ServerFnErrorErr::Serialization(message).into_app_error())));
                action.version().update(|n| *n += 1);
            }
        }
    };
    view! { <form action=S::url() method="post" on:submit=on_submit>{children()}</form> }
}

/// The submitted form's fields, the submit button's name and value included, as a browser
/// sends them.
fn form_fields(ev: &SubmitEvent) -> Result<Fields, String> {
    use leptos::wasm_bindgen::JsCast;
    use leptos::web_sys::js_sys::{Array, try_iter};
    let data = leptos::form::form_data_from_event(ev).map_err(|e| e.to_string())?;
    let mut fields = Vec::new();
    for entry in try_iter(&data).ok().flatten().into_iter().flatten() {
        let Ok(entry) = entry.map(JsCast::unchecked_into::<Array>) else { continue };
        // A file input's value is a File, not text: no form here has one.
        if let (Some(name), Some(value)) = (entry.get(0).as_string(), entry.get(1).as_string()) {
            fields.push((name, value));
        }
    }
    Ok(Fields(fields))
}

/// A flat form: name/value pairs in document order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The pairs read into `T`, a struct whose fields are text, numbers, booleans or
    /// options of those (an empty value is `None`). Names that `T` lacks are ignored; a
    /// number that does not parse is an error naming the value.
    pub fn read<T: DeserializeOwned>(self) -> Result<T, String> {
        T::deserialize(MapDeserializer::<_, Error>::new(self.0.into_iter().map(|(name, value)| (name, Text(value))))).map_err(|e| e.to_string())
    }
}

/// One field's value: text that numbers and booleans are parsed from on request.
struct Text(String);

impl<'de> IntoDeserializer<'de, Error> for Text {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// `deserialize_<kind>` parsing the text as `$ty` and handing it to `visit_<kind>`.
macro_rules! parsed {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0.trim().parse::<$ty>() {
                Ok(value) => visitor.$visit(value),
                Err(_) => Err(de::Error::custom(format!("{:?} is not {}", self.0, $what))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Text {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_empty() { visitor.visit_none() } else { visitor.visit_some(self) }
    }

    parsed! {
        deserialize_bool visit_bool bool, "true or false";
        deserialize_i32 visit_i32 i32, "a whole number";
        deserialize_i64 visit_i64 i64, "a whole number";
        deserialize_u32 visit_u32 u32, "a whole number of at least 0";
        deserialize_u64 visit_u64 u64, "a whole number of at least 0";
        deserialize_f64 visit_f64 f64, "a number";
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i128 u8 u16 u128 f32 char str string bytes byte_buf unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Args {
        run_id: i64,
        csrf: String,
        note: Option<String>,
        keep: Option<u32>,
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
    }

    #[test]
    fn reads_text_numbers_and_options_and_ignores_other_names() {
        let read: Args = fields(&[("csrf", "t0k"), ("run_id", " 42 "), ("note", ""), ("keep", "3"), ("submit", "Go")]).read().unwrap();
        assert_eq!(read, Args { run_id: 42, csrf: "t0k".into(), note: None, keep: Some(3) });
    }

    #[test]
    fn says_which_value_is_wrong_and_which_field_is_missing() {
        let error = fields(&[("csrf", "t"), ("run_id", "forty")]).read::<Args>().unwrap_err();
        assert!(error.contains("\"forty\" is not a whole number"), "{error}");
        let error = fields(&[("run_id", "1")]).read::<Args>().unwrap_err();
        assert!(error.contains("missing field `csrf`"), "{error}");
    }
}

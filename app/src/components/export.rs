//! "SVG" buttons beside charts: save the chart as a standalone SVG file. The chart is the
//! server-rendered SVG itself; saving inlines the styles the page's CSS gives each element
//! (colours, strokes, fonts), so the file looks the same anywhere. Needs JavaScript: without
//! it the button stays disabled.

use leptos::prelude::*;

/// Presentation properties copied from the page's CSS onto each element of the saved file.
#[cfg(feature = "hydrate")]
const STYLES: [&str; 9] = ["fill", "stroke", "stroke-width", "stroke-dasharray", "opacity", "font-size", "font-family", "font-weight", "text-anchor"];

/// A button that saves the SVG chart inside the nearest `figure` around it as `file`.
#[component]
pub fn SvgButton(file: String) -> impl IntoView {
    let ready = RwSignal::new(false);
    // Effects run in the browser only: the button works once the page has hydrated.
    Effect::new(move |_| ready.set(true));
    let save = move |event: leptos::ev::MouseEvent| {
        #[cfg(feature = "hydrate")]
        if let Err(error) = save_svg(&event, &file) {
            leptos::logging::warn!("could not save the chart: {error:?}");
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&event, &file);
    };
    view! {
        <button type="button" class="svg-button" title="Save this chart as an SVG file" disabled=move || !ready.get() on:click=save>"SVG"</button>
    }
}

#[cfg(feature = "hydrate")]
fn save_svg(event: &leptos::ev::MouseEvent, file: &str) -> Result<(), wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    use web_sys::js_sys;

    let button: web_sys::Element = event.target().ok_or("no target")?.dyn_into()?;
    let figure = button.closest("figure")?.ok_or("no figure around the button")?;
    let svg = figure.query_selector("svg")?.ok_or("no chart in the figure")?;
    let copy: web_sys::Element = svg.clone_node_with_deep(true)?.dyn_into()?;
    let window = web_sys::window().ok_or("no window")?;
    let originals = svg.query_selector_all("*")?;
    let copies = copy.query_selector_all("*")?;
    for i in 0..originals.length() {
        let (Some(original), Some(target)) = (originals.item(i), copies.item(i)) else { continue };
        let (original, target): (web_sys::Element, web_sys::Element) = (original.dyn_into()?, target.dyn_into()?);
        if let Some(style) = window.get_computed_style(&original)? {
            let inline: Vec<String> =
                STYLES.iter().filter_map(|p| style.get_property_value(p).ok().filter(|v| !v.is_empty()).map(|v| format!("{p}:{v}"))).collect();
            target.set_attribute("style", &inline.join(";"))?;
        }
    }
    // A line chart keeps its legend below the plot, where only the saved file shows it.
    if let Some(height) = svg.get_attribute("data-export-height") {
        let width = svg.get_attribute("viewBox").and_then(|v| v.split_whitespace().nth(2).map(str::to_owned)).unwrap_or_default();
        copy.set_attribute("viewBox", &format!("0 0 {width} {height}"))?;
    }
    copy.set_attribute("xmlns", "http://www.w3.org/2000/svg")?;
    let text = web_sys::XmlSerializer::new()?.serialize_to_string(&copy)?;
    let parts = js_sys::Array::of1(&format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{text}").into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("image/svg+xml");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let document = window.document().ok_or("no document")?;
    let link: web_sys::HtmlAnchorElement = document.create_element("a")?.dyn_into()?;
    link.set_href(&url);
    link.set_download(file);
    link.click();
    web_sys::Url::revoke_object_url(&url)?;
    Ok(())
}

//! Building blocks shared by the pages.

pub mod charts;
pub mod export;
pub mod form;
pub mod live;
pub mod progress;
pub mod resource;
pub mod time;

use leptos::prelude::*;
use protocol::RunStatus;
use protocol::auth::Identity;

/// The signed-in account, provided by [`crate::App`]: the same on the server, which
/// authenticated the request, and in the browser, which reads it from the page's
/// `<meta name="forgetlab-account">`.
#[derive(Clone, Debug, PartialEq)]
pub struct Me(pub Option<Identity>);

/// The signed-in account, if any.
pub fn me() -> Option<Identity> {
    use_context::<Me>().and_then(|me| me.0)
}

/// The hidden `csrf` field every form that changes something carries (the server refuses a
/// change from a session without it).
#[component]
pub fn CsrfField() -> impl IntoView {
    let token = me().and_then(|who| who.csrf).unwrap_or_default();
    view! { <input type="hidden" name="csrf" value=token /> }
}

/// A run's status as a coloured label.
#[component]
pub fn StatusBadge(status: RunStatus) -> impl IntoView {
    view! { <span class=format!("badge badge-{}", status.as_str())>{status.as_str()}</span> }
}

/// `0.8734` -> `87.3%`.
pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// A number with at most `digits` decimals, or an en dash for "none".
pub fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// An architecture's place in [`protocol::Arch::ALL`] (its colour and its order on every
/// page); `None` for a name this build does not know.
pub fn arch_index(arch: &str) -> Option<usize> {
    protocol::Arch::parse(arch).and_then(|a| protocol::Arch::ALL.iter().position(|&b| b == a))
}

/// An architecture's display name (`ResNet-18`), or the stored name when it is not known.
pub fn arch_label(arch: &str) -> String {
    protocol::Arch::parse(arch).map_or_else(|| arch.to_owned(), |a| a.label().to_owned())
}

/// Seconds from `started` to `finished` (stored times), when both are known.
pub fn elapsed_seconds(started: Option<&str>, finished: Option<&str>) -> Option<i64> {
    Some(timestamp_seconds(finished?)? - timestamp_seconds(started?)?)
}

/// A sample's forgetting events as its card shows them: `forgotten 2×`.
pub fn forgotten_label(events: u32) -> String {
    format!("forgotten {events}×")
}

/// Seconds as `1 h 02 min`, `3 min 05 s` or `12 s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// Every field of a spec as it is stored (`sampling.kind`, `lr`, ...), by name, each leaf
/// as its JSON text (strings bare).
pub fn flatten_spec(value: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(value: &serde_json::Value, at: &str, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, field) in fields {
                    walk(field, &if at.is_empty() { name.clone() } else { format!("{at}.{name}") }, out);
                }
            }
            serde_json::Value::String(text) => out.push((at.to_owned(), text.clone())),
            leaf => out.push((at.to_owned(), leaf.to_string())),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out.sort();
    out
}

/// A stored time, `YYYY-MM-DDTHH:MM:SSZ` (UTC), as Unix seconds; `None` for any other text.
pub fn timestamp_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let field = |from: usize, to: usize| text.get(from..to).filter(|t| t.bytes().all(|c| c.is_ascii_digit())).and_then(|t| t.parse::<i64>().ok());
    let (y, m, d) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    let (hh, mm, ss) = (field(11, 13)?, field(14, 16)?, field(17, 19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// `?a=1&b=x%20y` from the pairs whose value is not empty ("" when none is).
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' | b':' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let parts: Vec<String> = pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// A page of a long list: where it starts, and links to the pages before and after.
#[component]
pub fn Pager(total: u64, offset: u64, limit: u64, href: impl Fn(u64) -> String + 'static) -> impl IntoView {
    let last = offset.saturating_add(limit).min(total);
    let previous = (offset > 0).then(|| href(offset.saturating_sub(limit)));
    let next = (last < total).then(|| href(last));
    view! {
        <nav class="pager" aria-label="pages">
            <span class="muted">{if total == 0 { "none".to_owned() } else { format!("{}–{} of {}", offset + 1, last, total) }}</span>
            {previous.map(|h| view! { <a class="button small" href=h rel="prev">"← Previous"</a> })}
            {next.map(|h| view! { <a class="button small" href=h rel="next">"Next →"</a> })}
        </nav>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_read_as_unix_seconds() {
        assert_eq!(timestamp_seconds("1970-01-01T00:00:00Z"), Some(0));
        // `date -u -d 2026-12-04T01:50:23Z +%s`
        assert_eq!(timestamp_seconds("2026-12-04T01:50:23Z"), Some(1_796_349_023));
        assert_eq!(timestamp_seconds("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        assert_eq!(timestamp_seconds("2026-12-04 01:50:23"), None);
        assert_eq!(timestamp_seconds("2026-13-04T01:50:23Z"), None);
        assert_eq!(timestamp_seconds(""), None);
        assert_eq!(elapsed_seconds(Some("2026-12-04T01:50:23Z"), Some("2026-12-04T02:51:24Z")), Some(3661));
        assert_eq!(elapsed_seconds(Some("2026-12-04T01:50:23Z"), None), None);
    }

    #[test]
    fn query_strings_skip_empty_values_and_encode_the_rest() {
        assert_eq!(query_string(&[("a", "1".into()), ("b", String::new()), ("c", "x y&z".into())]), "?a=1&c=x%20y%26z");
        assert_eq!(query_string(&[("a", String::new())]), "");
    }
}

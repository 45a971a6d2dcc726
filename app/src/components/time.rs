//! Times as a reader wants them: "3 min ago" in the reader's own time zone.
//!
//! The server stores and serves UTC (`2026-12-04T01:50:23Z`) and cannot know the reader's
//! zone, so a page first renders the UTC time (the server's HTML and the hydrated page agree),
//! and the browser then writes it relative to its clock, with the local date and time, and
//! the UTC one, as the element's title. `<time datetime>` keeps the stored value.

use super::timestamp_seconds;
use leptos::prelude::*;

/// A stored time: UTC in the server's HTML; relative, local-titled in the browser.
#[component]
pub fn Time(at: String) -> impl IntoView {
    let seconds = timestamp_seconds(&at);
    // (now, the zone's offset east of UTC at `seconds`, in minutes): known in the browser only.
    let clock = RwSignal::new(None::<(i64, i64)>);
    #[cfg(feature = "hydrate")]
    if let Some(at) = seconds {
        let read = move || {
            let now = (web_sys::js_sys::Date::now() / 1000.0).floor() as i64;
            let offset = -web_sys::js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at as f64 * 1000.0)).get_timezone_offset() as i64;
            clock.set(Some((now, offset)));
        };
        Effect::new(move |_| read());
        // "3 min ago" stays true on a page left open.
        if let Ok(handle) = set_interval_with_handle(read, std::time::Duration::from_secs(30)) {
            on_cleanup(move || handle.clear());
        }
    }
    let utc = seconds.map_or_else(|| at.clone(), |s| format!("{} UTC", calendar_text(s, 0)));
    let (text_utc, title_utc) = (utc.clone(), utc);
    view! {
        <time datetime=at.clone()
            title=move || match (seconds, clock.get()) {
                (Some(s), Some((_, offset))) => format!("{} local time ({title_utc})", calendar_text(s, offset)),
                _ => title_utc.clone(),
            }>
            {move || match (seconds, clock.get()) {
                (Some(s), Some((now, offset))) => relative_text(s, now, offset),
                _ => text_utc.clone(),
            }}
        </time>
    }
}

/// `YYYY-MM-DD HH:MM` of Unix `seconds` in a zone `offset` minutes east of UTC.
pub fn calendar_text(seconds: i64, offset: i64) -> String {
    let local = seconds + offset * 60;
    let (days, in_day) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", in_day / 3600, in_day % 3600 / 60)
}

/// `seconds` as seen at `now`: "just now", "5 min ago", "3 h ago", "yesterday", "4 days ago";
/// older times, and times ahead of the clock by more than a minute, as the local date and time.
pub fn relative_text(seconds: i64, now: i64, offset: i64) -> String {
    match now - seconds {
        -59..60 => "just now".to_owned(),
        ago @ 60..3600 => format!("{} min ago", ago / 60),
        ago @ 3600..86_400 => format!("{} h ago", ago / 3600),
        86_400..172_800 => "yesterday".to_owned(),
        ago @ 172_800..604_800 => format!("{} days ago", ago / 86_400),
        _ => calendar_text(seconds, offset),
    }
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// civil_from_days, the inverse of the days_from_civil in [`timestamp_seconds`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_text_reads_back_what_timestamp_seconds_read() {
        for text in ["1970-01-01T00:00:00Z", "2024-02-29T23:59:00Z", "2026-12-04T01:50:00Z", "1999-12-31T23:59:00Z", "2100-03-01T00:00:00Z"] {
            let seconds = timestamp_seconds(text).unwrap();
            assert_eq!(calendar_text(seconds, 0), text[..16].replace('T', " "), "{text}");
        }
        let at = timestamp_seconds("2026-12-04T23:30:00Z").unwrap();
        // `TZ=Europe/Berlin date -d 2026-12-04T23:30:00Z` (UTC+1 in December): the next day.
        assert_eq!(calendar_text(at, 60), "2026-12-05 00:30");
        // `TZ=America/New_York date -d ...` (UTC-5): the same day, earlier.
        assert_eq!(calendar_text(at, -300), "2026-12-04 18:30");
        assert_eq!(calendar_text(at, 330), "2026-12-05 05:00", "India, UTC+5:30");
    }

    #[test]
    fn recent_times_read_relative_and_old_ones_as_local_dates() {
        let at = timestamp_seconds("2026-12-04T12:00:00Z").unwrap();
        assert_eq!(relative_text(at, at + 5, 0), "just now");
        assert_eq!(relative_text(at, at - 30, 0), "just now", "a clock a little behind the server's");
        assert_eq!(relative_text(at, at + 60, 0), "1 min ago");
        assert_eq!(relative_text(at, at + 59 * 60 + 59, 0), "59 min ago");
        assert_eq!(relative_text(at, at + 3 * 3600 + 10, 0), "3 h ago");
        assert_eq!(relative_text(at, at + 86_400 + 7200, 0), "yesterday");
        assert_eq!(relative_text(at, at + 4 * 86_400, 0), "4 days ago");
        assert_eq!(relative_text(at, at + 30 * 86_400, 60), "2026-12-04 13:00");
        assert_eq!(relative_text(at, at - 3600, 60), "2026-12-04 13:00", "an hour ahead of the clock");
    }
}

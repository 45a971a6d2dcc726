//! Server-rendered SVG charts: readable without JavaScript, exportable as they are.

use leptos::prelude::*;

use super::export::SvgButton;

/// A chart's title as a file name: `Loss per epoch` -> `loss-per-epoch.svg`.
pub fn file_name(title: &str) -> String {
    let mut name = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    format!("{}.svg", name.trim_end_matches('-'))
}

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 46.0;

/// One line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// CSS class giving the line its colour (`series-0`, `series-1`, ...).
    pub class: &'static str,
    /// More CSS classes for the line: a dash pattern ([`DASHES`]), `this-run` (drawn thicker).
    pub style: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, class: &'static str, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), class, style: String::new(), points }
    }

    pub fn styled(mut self, style: impl Into<String>) -> Series {
        self.style = style.into();
        self
    }
}

const SERIES_CLASSES: [&str; 8] = ["series-0", "series-1", "series-2", "series-3", "series-4", "series-5", "series-6", "series-7"];

/// One colour per architecture on every chart (its place in [`protocol::Arch::ALL`]); an
/// unknown name gets the last colour.
pub fn arch_class(arch: &str) -> &'static str {
    super::arch_index(arch).map_or(SERIES_CLASSES[7], |i| SERIES_CLASSES[i])
}

/// Line dash patterns, solid first (`style/main.css` draws `dash-1` to `dash-3`).
pub const DASHES: [&str; 4] = ["", "dash-1", "dash-2", "dash-3"];

/// One dash pattern per seed among `seeds` (the lowest seed solid), for lines of many runs.
pub fn dashes_by_seed(seeds: impl IntoIterator<Item = u64>) -> impl Fn(u64) -> &'static str {
    let mut seeds: Vec<u64> = seeds.into_iter().collect();
    seeds.sort_unstable();
    seeds.dedup();
    move |seed| DASHES[seeds.binary_search(&seed).unwrap_or(0) % DASHES.len()]
}

/// Where each legend entry of a saved chart goes, in rows that wrap at the plot's width,
/// below the chart (`(x, y)` per name), and the height the saved file needs for them.
fn legend_layout(names: &[&str]) -> (Vec<(f64, f64)>, f64) {
    const ROW: f64 = 16.0;
    let (mut x, mut y) = (LEFT, HEIGHT + 6.0);
    let places = names
        .iter()
        .map(|name| {
            let width = 30.0 + name.chars().count() as f64 * 6.5 + 14.0;
            if x > LEFT && x + width > WIDTH - RIGHT {
                (x, y) = (LEFT, y + ROW);
            }
            let place = (x, y);
            x += width;
            place
        })
        .collect();
    (places, y + ROW + 4.0)
}

/// A shaded interval around a line of a [`LineChart`]: `(x, low, high)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub class: &'static str,
    pub points: Vec<(f64, f64, f64)>,
}

/// About `count` round tick values covering `[min, max]` (steps of 1, 2 or 5 times a power of ten).
pub fn nice_ticks(min: f64, max: f64, count: usize) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite()) || count == 0 {
        return vec![];
    }
    if max <= min {
        return vec![min];
    }
    let raw = (max - min) / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|&s| s >= raw).unwrap_or(10.0 * magnitude);
    let first = (min / step).ceil() as i64;
    let last = (max / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn tick_label(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e6 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Maps data coordinates into the plot area.
#[derive(Clone, Copy)]
struct Scale {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Scale {
    fn x(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0).max(f64::EPSILON) * (WIDTH - LEFT - RIGHT)
    }
    fn y(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0).max(f64::EPSILON) * (HEIGHT - TOP - BOTTOM)
    }
}

fn axes(scale: Scale, x_ticks: Vec<f64>, y_ticks: Vec<f64>, x_label: String, y_label: String) -> impl IntoView {
    let grid = y_ticks
        .into_iter()
        .map(|t| {
            let y = scale.y(t);
            view! {
                <line class="grid" x1=LEFT x2={WIDTH - RIGHT} y1=y y2=y />
                <text class="tick" x={LEFT - 6.0} y={y + 4.0} text-anchor="end">{tick_label(t)}</text>
            }
        })
        .collect_view();
    let x_marks = x_ticks
        .into_iter()
        .map(|t| {
            let x = scale.x(t);
            view! {
                <line class="axis" x1=x x2=x y1={HEIGHT - BOTTOM} y2={HEIGHT - BOTTOM + 5.0} />
                <text class="tick" x=x y={HEIGHT - BOTTOM + 18.0} text-anchor="middle">{tick_label(t)}</text>
            }
        })
        .collect_view();
    view! {
        {grid}
        {x_marks}
        <line class="axis" x1=LEFT x2={WIDTH - RIGHT} y1={HEIGHT - BOTTOM} y2={HEIGHT - BOTTOM} />
        <line class="axis" x1=LEFT x2=LEFT y1=TOP y2={HEIGHT - BOTTOM} />
        <text class="axis-label" x={(LEFT + WIDTH - RIGHT) / 2.0} y={HEIGHT - 8.0} text-anchor="middle">{x_label}</text>
        <text class="axis-label" x=14.0 y={(TOP + HEIGHT - BOTTOM) / 2.0} text-anchor="middle"
            transform=format!("rotate(-90 14 {})", (TOP + HEIGHT - BOTTOM) / 2.0)>{y_label}</text>
    }
}

/// Lines over a shared x axis, with an optional shaded band for the head-warmup epochs.
#[component]
pub fn LineChart(
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
    /// Shade x in [x_min, warmup_until]: the head-warmup phase.
    #[prop(default = None)]
    warmup_until: Option<f64>,
    /// Force the y range (e.g. [0, 1] for accuracies).
    #[prop(default = None)]
    y_range: Option<(f64, f64)>,
    /// Ticks at whole numbers only on the x axis (epochs); false for fractions.
    #[prop(default = true)]
    whole_x: bool,
    /// Intervals drawn under the lines (e.g. 95 % over seeds).
    #[prop(default = vec![])]
    bands: Vec<Band>,
) -> impl IntoView {
    let band_ends = bands.iter().flat_map(|b| b.points.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).chain(band_ends).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let (x_min, x_max) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| (lo.min(x), hi.max(x)));
    let (y_min, y_max) = y_range.unwrap_or_else(|| {
        let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| (lo.min(y), hi.max(y)));
        (lo.min(0.0), if hi > lo { hi * 1.05 } else { lo + 1.0 })
    });
    let empty = all.is_empty();
    let (x_min, x_max) = if empty {
        (0.0, 1.0)
    } else if x_max > x_min {
        (x_min, x_max)
    } else {
        (x_min - 0.5, x_max + 0.5)
    };
    let scale = Scale { x0: x_min, x1: x_max, y0: y_min, y1: y_max };
    let x_ticks: Vec<f64> = nice_ticks(x_min, x_max, 6).into_iter().filter(|t| !whole_x || t.fract() == 0.0).collect();
    let y_ticks = nice_ticks(y_min, y_max, 5);
    let band = warmup_until.filter(|&w| !empty && w >= x_min).map(|w| {
        let x = scale.x(x_min);
        let width = scale.x(w.min(x_max)) - x;
        view! {
            <rect class="warmup-band" x=x y=TOP width={width.max(2.0)} height={HEIGHT - TOP - BOTTOM}>
                <title>"head warmup"</title>
            </rect>
            <text class="band-label" x={x + 4.0} y={TOP + 12.0}>"warmup"</text>
        }
    });
    let shaded = bands
        .iter()
        .filter(|b| !b.points.is_empty())
        .map(|b| {
            let upper = b.points.iter().map(|&(x, _, hi)| format!("{:.1},{:.1}", scale.x(x), scale.y(hi.min(y_max))));
            let lower = b.points.iter().rev().map(|&(x, lo, _)| format!("{:.1},{:.1}", scale.x(x), scale.y(lo.max(y_min))));
            let points: Vec<String> = upper.chain(lower).collect();
            view! { <polygon class=format!("band {}", b.class) points=points.join(" ") /> }
        })
        .collect_view();
    let x_name = x_label.clone();
    // Which lines the reader has hidden with the legend (all drawn at first and without JavaScript).
    let hidden = RwSignal::new(vec![false; series.len()]);
    let is_hidden = move |i: usize| hidden.with(|h| h.get(i).copied().unwrap_or(false));
    let shown = move |i: usize| move || is_hidden(i).then_some("none");
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let points = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", scale.x(x), scale.y(y))).collect::<Vec<_>>().join(" ");
            let dots = s
                .points
                .iter()
                .map(|&(x, y)| {
                    view! {
                        <circle class=format!("dot {}", s.class) cx={scale.x(x)} cy={scale.y(y)} r=3.0>
                            <title>{format!("{}: {x_name} {}, {}", s.name, tick_label(x), tick_label((y * 10000.0).round() / 10000.0))}</title>
                        </circle>
                    }
                })
                .collect_view();
            view! {
                <g class="series" data-series=i data-name=s.name.clone() display=shown(i)>
                    <polyline class=format!("line {} {}", s.class, s.style) points=points fill="none" />
                    {dots}
                </g>
            }
        })
        .collect_view();
    // A legend for more than one line: in the page as HTML (it wraps, and each entry shows or
    // hides its line), and inside the SVG below the chart, where only a saved file shows it.
    let many = series.len() > 1;
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    let (places, export_height) = if many { legend_layout(&names) } else { (vec![], HEIGHT) };
    let export_legend = series
        .iter()
        .zip(places)
        .enumerate()
        .map(|(i, (s, (x, y)))| {
            view! {
                <g class="export-legend" display=shown(i)>
                    <line class=format!("line {} {}", s.class, s.style) x1=x x2={x + 24.0} y1={y + 5.0} y2={y + 5.0} />
                    <text class="legend" x={x + 30.0} y={y + 9.0}>{s.name.clone()}</text>
                </g>
            }
        })
        .collect_view();
    let legend = many.then(|| {
        let entries = series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                view! {
                    <li>
                        <button type="button" class="legend-entry" data-series=i title="Show or hide this line"
                            aria-pressed=move || (!is_hidden(i)).to_string()
                            on:click=move |_| hidden.update(|h| if let Some(v) = h.get_mut(i) { *v = !*v })>
                            <svg class="legend-swatch" viewBox="0 0 24 10" width="24" height="10" aria-hidden="true">
                                <line class=format!("line {} {}", s.class, s.style) x1="1" x2="23" y1="5" y2="5" />
                            </svg>
                            {s.name.clone()}
                        </button>
                    </li>
                }
            })
            .collect_view();
        view! { <ul class="chart-legend">{entries}</ul> }
    });
    view! {
        <figure class="chart">
            <figcaption>{title.clone()} <SvgButton file=file_name(&title) /></figcaption>
            <svg class="line-chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=title xmlns="http://www.w3.org/2000/svg"
                data-lines=series.len() data-export-height=export_height>
                {band}
                {axes(scale, x_ticks, y_ticks, x_label, y_label)}
                {shaded}
                {lines}
                {export_legend}
                {empty.then(|| view! { <text class="empty-chart" x={WIDTH / 2.0} y={HEIGHT / 2.0} text-anchor="middle">"no epochs yet"</text> })}
            </svg>
            {legend}
        </figure>
    }
    .into_any()
}

/// Bars of `counts[k]` at integer `k` (e.g. how many samples were forgotten k times), or,
/// with `bin_width`, over the interval `[k w, (k + 1) w)` (e.g. R^2 in bins of 0.05).
#[component]
pub fn Histogram(
    title: String,
    x_label: String,
    y_label: String,
    counts: Vec<u64>,
    #[prop(optional)] bin_width: Option<f64>,
    /// Values below the first interval, counted apart: drawn as a labelled bar left of it,
    /// with a line where the intervals start (`(label, count)`, e.g. `("< 0", n)`).
    #[prop(optional)]
    underflow: Option<(String, u64)>,
) -> impl IntoView {
    let max = counts.iter().copied().chain(underflow.iter().map(|u| u.1)).max().unwrap_or(0).max(1) as f64;
    let bins = counts.len().max(1) as f64;
    let width = bin_width.unwrap_or(1.0);
    // Room for the underflow bar, one bin wide, half a bin from the first interval.
    let x0 = if underflow.is_some() { -1.5 * width } else { 0.0 };
    // Integer bins are centred on k; intervals start at k w.
    let (scale, x_ticks) = match bin_width {
        None => (
            Scale { x0: x0 - 0.5, x1: bins - 0.5, y0: 0.0, y1: max * 1.08 },
            nice_ticks(0.0, bins - 1.0, 8).into_iter().filter(|t| t.fract() == 0.0).collect::<Vec<_>>(),
        ),
        Some(w) => (Scale { x0, x1: bins * w, y0: 0.0, y1: max * 1.08 }, nice_ticks(0.0, bins * w, 6)),
    };
    let y_ticks: Vec<f64> = nice_ticks(0.0, max * 1.08, 5).into_iter().filter(|t| t.fract() == 0.0).collect();
    let bar_width = (scale.x(width) - scale.x(0.0)) * 0.8;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(k, &count)| {
            let (centre, tip) = match bin_width {
                None => (k as f64, format!("{count} samples with {k} forgetting events")),
                Some(w) => ((k as f64 + 0.5) * w, format!("{count} in [{}, {})", tick_label(k as f64 * w), tick_label((k + 1) as f64 * w))),
            };
            let x = scale.x(centre) - bar_width / 2.0;
            let y = scale.y(count as f64);
            view! {
                <rect class="bar" x=x y=y width=bar_width height={(HEIGHT - BOTTOM - y).max(0.0)} data-bin=k data-count=count>
                    <title>{tip}</title>
                </rect>
            }
        })
        .collect_view();
    let underflow = underflow.map(|(label, count)| {
        let centre = if bin_width.is_some() { -0.75 * width } else { -1.0 };
        let (x, y, zero) = (scale.x(centre), scale.y(count as f64), scale.x(if bin_width.is_some() { 0.0 } else { -0.5 }));
        view! {
            <rect class="bar underflow" x={x - bar_width / 2.0} y=y width=bar_width height={(HEIGHT - BOTTOM - y).max(0.0)} data-bin="underflow" data-count=count>
                <title>{format!("{count} {label}")}</title>
            </rect>
            <text class="tick" x=x y={HEIGHT - BOTTOM + 18.0} text-anchor="middle">{label}</text>
            <line class="zero-line" x1=zero x2=zero y1=TOP y2={HEIGHT - BOTTOM} />
        }
    });
    view! {
        <figure class="chart">
            <figcaption>{title.clone()} <SvgButton file=file_name(&title) /></figcaption>
            <svg class="histogram" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=title xmlns="http://www.w3.org/2000/svg">
                {axes(scale, x_ticks, y_ticks, x_label, y_label)}
                {bars}
                {underflow}
            </svg>
        </figure>
    }
    .into_any()
}

/// Viridis (perceptually uniform, readable with the common colour-vision deficiencies) at
/// `t` in [0, 1], as `#rrggbb`.
pub fn viridis(t: f64) -> String {
    const STOPS: [(u8, u8, u8); 9] =
        [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let at = t * (STOPS.len() - 1) as f64;
    let (i, f) = ((at.floor() as usize).min(STOPS.len() - 2), at - at.floor().min((STOPS.len() - 2) as f64));
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    format!("#{:02x}{:02x}{:02x}", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Text that stays readable on a viridis cell.
fn ink_on(t: f64) -> &'static str {
    if t > 0.55 { "#1d2330" } else { "#ffffff" }
}

/// A colour bar for a viridis scale over `[lo, hi]`, at the chart's right.
fn colour_bar(x: f64, lo: f64, hi: f64, label: String) -> impl IntoView {
    let steps = 20;
    let height = HEIGHT - TOP - BOTTOM;
    let cells = (0..steps)
        .map(|k| {
            let t = (k as f64 + 0.5) / steps as f64;
            let y = TOP + height * (1.0 - (k + 1) as f64 / steps as f64);
            view! { <rect x=x y=y width=12.0 height={height / steps as f64 + 0.5} fill=viridis(t) /> }
        })
        .collect_view();
    view! {
        {cells}
        <text class="tick" x={x + 16.0} y={TOP + 8.0}>{tick_label((hi * 1000.0).round() / 1000.0)}</text>
        <text class="tick" x={x + 16.0} y={TOP + height}>{tick_label((lo * 1000.0).round() / 1000.0)}</text>
        <text class="axis-label" x={x + 6.0} y={TOP - 8.0} text-anchor="middle">{label}</text>
    }
}

/// A matrix of values as coloured cells with row and column labels (Jaccard or Spearman
/// between runs, a confusion matrix), each cell titled with its exact value.
#[component]
pub fn Heatmap(
    title: String,
    row_labels: Vec<String>,
    column_labels: Vec<String>,
    /// `values[row][column]`; `None` is drawn blank.
    values: Vec<Vec<Option<f64>>>,
    /// The colour scale's range.
    range: (f64, f64),
    /// Decimals of the numbers written in the cells (none when the cells are small).
    #[prop(default = 2)]
    digits: usize,
    /// Axis names, e.g. ("true class", "predicted class").
    #[prop(default = (String::new(), String::new()))]
    axes: (String, String),
) -> impl IntoView {
    let rows = values.len().max(1);
    let columns = values.first().map_or(1, Vec::len).max(1);
    let left = 10.0 + row_labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * 6.5;
    let top = 24.0;
    let cell = ((WIDTH - left - 70.0) / columns as f64).min(56.0);
    let height = top + cell * rows as f64 + 34.0;
    let width = left + cell * columns as f64 + 70.0;
    let write_numbers = cell >= 30.0;
    let (lo, hi) = range;
    let scale = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let cells = values
        .iter()
        .enumerate()
        .flat_map(|(r, row)| row.iter().enumerate().map(move |(c, v)| (r, c, *v)))
        .map(|(r, c, v)| {
            let (x, y) = (left + c as f64 * cell, top + r as f64 * cell);
            let tip = format!(
                "{} × {}: {}",
                row_labels.get(r).cloned().unwrap_or_default(),
                column_labels.get(c).cloned().unwrap_or_default(),
                v.map_or("–".to_owned(), |v| format!("{v:.4}"))
            );
            let fill = v.map_or("#f2f4f7".to_owned(), |v| viridis(scale(v)));
            let ink = v.map_or("#667085", |v| ink_on(scale(v)));
            view! {
                <g class="cell" data-row=r data-column=c data-value=v.map(|v| v.to_string()).unwrap_or_default()>
                    <rect x=x y=y width={cell - 1.0} height={cell - 1.0} fill=fill><title>{tip}</title></rect>
                    {(write_numbers && v.is_some()).then(|| view! {
                        <text class="cell-value" x={x + cell / 2.0} y={y + cell / 2.0 + 4.0} text-anchor="middle" fill=ink>
                            {v.map(|v| format!("{v:.digits$}")).unwrap_or_default()}
                        </text>
                    })}
                </g>
            }
        })
        .collect_view();
    let row_text = row_labels
        .iter()
        .enumerate()
        .map(|(r, l)| view! { <text class="tick" x={left - 6.0} y={top + (r as f64 + 0.5) * cell + 4.0} text-anchor="end">{l.clone()}</text> })
        .collect_view();
    let column_text = column_labels
        .iter()
        .enumerate()
        .map(|(c, l)| view! { <text class="tick" x={left + (c as f64 + 0.5) * cell} y={top - 6.0} text-anchor="middle">{l.clone()}</text> })
        .collect_view();
    let bar_x = left + cell * columns as f64 + 14.0;
    let steps = 10;
    let bar = (0..steps)
        .map(|k| {
            let h = cell * rows as f64 / steps as f64;
            let y = top + h * (steps - 1 - k) as f64;
            view! { <rect x=bar_x y=y width=10.0 height={h + 0.5} fill=viridis((k as f64 + 0.5) / steps as f64) /> }
        })
        .collect_view();
    view! {
        <figure class="chart heatmap">
            <figcaption>{title.clone()} <SvgButton file=file_name(&title) /></figcaption>
            <svg class="heatmap" viewBox=format!("0 0 {width} {height}") style=format!("max-width: {:.0}px", width * 1.25) role="img" aria-label=title xmlns="http://www.w3.org/2000/svg">
                {column_text}
                {row_text}
                {cells}
                {bar}
                <text class="tick" x={bar_x + 14.0} y={top + 8.0}>{tick_label(hi)}</text>
                <text class="tick" x={bar_x + 14.0} y={top + cell * rows as f64}>{tick_label(lo)}</text>
                <text class="axis-label" x={left + cell * columns as f64 / 2.0} y={height - 8.0} text-anchor="middle">{axes.1.clone()}</text>
                <text class="axis-label" x=10.0 y={top + cell * rows as f64 / 2.0} text-anchor="middle"
                    transform=format!("rotate(-90 10 {})", top + cell * rows as f64 / 2.0)>{axes.0.clone()}</text>
            </svg>
        </figure>
    }
    .into_any()
}

/// A scatter of up to 10^5 points drawn as a grid of counted cells (constant size in the
/// page and constant drawing time, however many points): each non-empty cell coloured by
/// its mean value when the grid has one (the data map's correctness), else by log count.
#[component]
pub fn GridChart(
    title: String,
    x_label: String,
    y_label: String,
    grid: protocol::Grid,
    #[prop(default = String::new())] colour_label: String,
) -> impl IntoView {
    let right = RIGHT + 60.0;
    let scale = Scale { x0: grid.x_min, x1: grid.x_max, y0: grid.y_min, y1: grid.y_max };
    // The plot is narrower than other charts by the colour bar.
    let sx = |x: f64| LEFT + (scale.x(x) - LEFT) * (WIDTH - LEFT - right) / (WIDTH - LEFT - RIGHT);
    let (cw, ch) = ((grid.x_max - grid.x_min) / f64::from(grid.x_bins.max(1)), (grid.y_max - grid.y_min) / f64::from(grid.y_bins.max(1)));
    let max_count = grid.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let by_mean = grid.means.is_some();
    let cells = grid
        .counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(cell, &n)| {
            let (i, j) = (cell % grid.x_bins as usize, cell / grid.x_bins as usize);
            let (x0, y0) = (grid.x_min + i as f64 * cw, grid.y_min + j as f64 * ch);
            let mean = grid.means.as_ref().and_then(|m| m[cell]);
            let t = if by_mean { mean.unwrap_or(0.0) } else { (n as f64).ln_1p() / max_count.ln_1p() };
            let (x, y) = (sx(x0), scale.y(y0 + ch));
            let tip = format!(
                "{n} samples, {} in [{}, {}), {} in [{}, {}){}",
                x_label,
                tick_label((x0 * 1000.0).round() / 1000.0),
                tick_label(((x0 + cw) * 1000.0).round() / 1000.0),
                y_label,
                tick_label((y0 * 1000.0).round() / 1000.0),
                tick_label(((y0 + ch) * 1000.0).round() / 1000.0),
                mean.map(|m| format!(", mean {colour_label} {m:.3}")).unwrap_or_default()
            );
            view! {
                <rect class="grid-cell" x=x y=y width={(sx(x0 + cw) - x).max(1.0)} height={(scale.y(y0) - y).max(1.0)} fill=viridis(t) data-count=n>
                    <title>{tip}</title>
                </rect>
            }
        })
        .collect_view();
    let x_ticks = nice_ticks(grid.x_min, grid.x_max, 6);
    let y_ticks = nice_ticks(grid.y_min, grid.y_max, 5);
    let x_marks = x_ticks
        .into_iter()
        .map(|t| view! { <text class="tick" x=sx(t) y={HEIGHT - BOTTOM + 18.0} text-anchor="middle">{tick_label((t * 1000.0).round() / 1000.0)}</text> })
        .collect_view();
    let y_marks = y_ticks
        .into_iter()
        .map(|t| view! { <text class="tick" x={LEFT - 6.0} y={scale.y(t) + 4.0} text-anchor="end">{tick_label((t * 1000.0).round() / 1000.0)}</text> })
        .collect_view();
    let bar = if by_mean {
        colour_bar(WIDTH - right + 14.0, 0.0, 1.0, colour_label.clone())
    } else {
        colour_bar(WIDTH - right + 14.0, 1.0, max_count, "count".into())
    };
    view! {
        <figure class="chart">
            <figcaption>{title.clone()} <SvgButton file=file_name(&title) /></figcaption>
            <svg class="grid-chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=title xmlns="http://www.w3.org/2000/svg"
                data-points=grid.points data-missing=grid.missing>
                <rect class="plot-area" x=LEFT y=TOP width={WIDTH - LEFT - right} height={HEIGHT - TOP - BOTTOM} />
                {cells}
                {x_marks}
                {y_marks}
                <line class="axis" x1=LEFT x2={WIDTH - right} y1={HEIGHT - BOTTOM} y2={HEIGHT - BOTTOM} />
                <line class="axis" x1=LEFT x2=LEFT y1=TOP y2={HEIGHT - BOTTOM} />
                <text class="axis-label" x={(LEFT + WIDTH - right) / 2.0} y={HEIGHT - 8.0} text-anchor="middle">{x_label.clone()}</text>
                <text class="axis-label" x=14.0 y={(TOP + HEIGHT - BOTTOM) / 2.0} text-anchor="middle"
                    transform=format!("rotate(-90 14 {})", (TOP + HEIGHT - BOTTOM) / 2.0)>{y_label.clone()}</text>
                {bar}
            </svg>
        </figure>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(nice_ticks(1.0, 10.0, 5), vec![2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(3.0, 3.0, 5), vec![3.0]);
        assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
    }

    #[test]
    fn file_names_come_from_titles() {
        assert_eq!(file_name("Loss per epoch"), "loss-per-epoch.svg");
        assert_eq!(file_name("R² of the retention-decay fits (definition A)"), "r-of-the-retention-decay-fits-definition-a.svg");
    }

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), "#440154");
        assert_eq!(viridis(1.0), "#fde725");
        assert_eq!(viridis(f64::NAN), "#440154");
        assert_eq!(viridis(0.5), "#21908d");
    }

    #[test]
    fn a_saved_legend_wraps_into_rows_below_the_chart() {
        let (one_row, height) = legend_layout(&["train", "validation"]);
        assert_eq!(one_row.iter().map(|p| p.1).collect::<Vec<_>>(), vec![HEIGHT + 6.0; 2]);
        assert!(one_row[1].0 > one_row[0].0 && height > HEIGHT);
        let long: Vec<String> = (0..11).map(|i| format!("#{i} DeiT-Small seed {i}")).collect();
        let (rows, taller) = legend_layout(&long.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(rows.iter().all(|&(x, _)| x >= LEFT && x < WIDTH - RIGHT));
        assert!(rows.last().unwrap().1 > HEIGHT + 6.0 + 16.0, "11 long names take at least 3 rows: {rows:?}");
        assert_eq!(taller, rows.last().unwrap().1 + 20.0);
    }

    #[test]
    fn each_architecture_has_its_own_colour() {
        let classes: Vec<&str> = protocol::Arch::ALL.iter().map(|a| arch_class(a.as_str())).collect();
        assert_eq!(classes, vec!["series-0", "series-1", "series-2"]);
        assert_eq!(arch_class("unknown"), "series-7");
    }

    #[test]
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(0.6000000000000001), "0.6");
    }
}

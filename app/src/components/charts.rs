//! Server-rendered SVG charts: readable without JavaScript, exportable as they are.

use leptos::prelude::*;

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
    pub points: Vec<(f64, f64)>,
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
) -> impl IntoView {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let (x_min, x_max) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| (lo.min(x), hi.max(x)));
    let (y_min, y_max) = y_range.unwrap_or_else(|| {
        let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| (lo.min(y), hi.max(y)));
        (lo.min(0.0), if hi > lo { hi * 1.05 } else { lo + 1.0 })
    });
    let empty = all.is_empty();
    let (x_min, x_max) = if empty { (0.0, 1.0) } else if x_max > x_min { (x_min, x_max) } else { (x_min - 0.5, x_max + 0.5) };
    let scale = Scale { x0: x_min, x1: x_max, y0: y_min, y1: y_max };
    let x_ticks: Vec<f64> = nice_ticks(x_min, x_max, 6).into_iter().filter(|t| t.fract() == 0.0).collect();
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
    let lines = series
        .iter()
        .map(|s| {
            let points = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", scale.x(x), scale.y(y))).collect::<Vec<_>>().join(" ");
            let dots = s
                .points
                .iter()
                .map(|&(x, y)| {
                    view! {
                        <circle class=format!("dot {}", s.class) cx={scale.x(x)} cy={scale.y(y)} r=3.0>
                            <title>{format!("{}: epoch {x}, {}", s.name, tick_label((y * 10000.0).round() / 10000.0))}</title>
                        </circle>
                    }
                })
                .collect_view();
            view! {
                <polyline class=format!("line {}", s.class) points=points fill="none" />
                {dots}
            }
        })
        .collect_view();
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let x = LEFT + 8.0 + i as f64 * 130.0;
            view! {
                <rect class=format!("swatch {}", s.class) x=x y=8.0 width=14.0 height=4.0 />
                <text class="legend" x={x + 20.0} y=14.0>{s.name.clone()}</text>
            }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>{title.clone()}</figcaption>
            <svg class="line-chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=title xmlns="http://www.w3.org/2000/svg">
                {band}
                {axes(scale, x_ticks, y_ticks, x_label, y_label)}
                {lines}
                {legend}
                {empty.then(|| view! { <text class="empty-chart" x={WIDTH / 2.0} y={HEIGHT / 2.0} text-anchor="middle">"no epochs yet"</text> })}
            </svg>
        </figure>
    }
}

/// Bars of `counts[k]` at integer `k` (e.g. how many samples were forgotten k times), or,
/// with `bin_width`, over the interval `[k w, (k + 1) w)` (e.g. R^2 in bins of 0.05).
#[component]
pub fn Histogram(title: String, x_label: String, y_label: String, counts: Vec<u64>, #[prop(optional)] bin_width: Option<f64>) -> impl IntoView {
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bins = counts.len().max(1) as f64;
    let width = bin_width.unwrap_or(1.0);
    // Integer bins are centred on k; intervals start at k w.
    let (scale, x_ticks) = match bin_width {
        None => (Scale { x0: -0.5, x1: bins - 0.5, y0: 0.0, y1: max * 1.08 }, nice_ticks(0.0, bins - 1.0, 8).into_iter().filter(|t| t.fract() == 0.0).collect::<Vec<_>>()),
        Some(w) => (Scale { x0: 0.0, x1: bins * w, y0: 0.0, y1: max * 1.08 }, nice_ticks(0.0, bins * w, 6)),
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
    view! {
        <figure class="chart">
            <figcaption>{title.clone()}</figcaption>
            <svg class="histogram" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=title xmlns="http://www.w3.org/2000/svg">
                {axes(scale, x_ticks, y_ticks, x_label, y_label)}
                {bars}
            </svg>
        </figure>
    }
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
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(0.6000000000000001), "0.6");
    }
}

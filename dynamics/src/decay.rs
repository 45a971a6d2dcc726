//! Retention decay of one sample (docs/design.md, "Retention decay"). A run fits one of four
//! definitions ([`Retention`]), chosen at launch and recorded with its statistics:
//!
//! - `a`, lag retention: `R(k) = P(correct at t + k | correct at t)` over the epochs t where
//!   the sample was correct, for every lag k with at least one such t; fitted by least squares
//!   to `exp(-k / tau)`.
//! - `a_floor`: the same points fitted to `a + (1 - a) exp(-k / tau)` (a free). Under plain A
//!   a trace that flips like a coin has `R(k) ~ 0.5` at every lag: no exponential to 0 fits
//!   it (R^2 below 0) and tau tracks when the sample was lost; the floor absorbs the level.
//! - `a_weighted`: definition A with each lag's point weighted by its number of pairs (the
//!   epochs t it averages over), normalised so the weights sum to the number of points: short
//!   lags, measured many times, count more than the last lag's single pair.
//! - `b`: the p_true trace from the first epoch the sample was correct, `y_j` at lag
//!   j = 0, 1, ..., fitted to `a + (y_0 - a) exp(-j / tau)` over j >= 1: anchored at the
//!   observed value y_0 at first learning (not at 1), a free.
//!
//! Each is also fitted with a power law, `(1 + k)^-alpha` in place of `exp(-k / tau)`, and the
//! two are compared by AIC = `n ln(SSE / n) + 2 p` (p = 1 without a floor, 2 with one; SSE
//! floored at the smallest positive f64; weighted SSE for `a_weighted`), so that a good
//! exponential fit is not an artefact of any decaying curve fitting. `R^2 = 1 - SSE / SS_tot`
//! (both weighted for `a_weighted`, about the weighted mean). Traces with fewer than
//! [`MIN_POINTS`] points or SS_tot = 0 are excluded, with the reason.
//!
//! Fitting: every model is `c + (y0 - c) exp(-rate x)` with x = k (exponential) or
//! x = ln(1 + k) (power), y0 = 1 except for `b`, c = 0 (no floor) or profiled out in closed
//! form. The rate minimises the SSE: the best of a coarse grid over [0, 100], then the zero of
//! the SSE's derivative in the grid cells around it, to full precision.

use std::rc::Rc;

/// Fewer points than this and a trace is not fitted.
pub const MIN_POINTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Never correct (A) or never learned (B): nothing to decay.
    NeverLearned,
    /// Fewer than [`MIN_POINTS`] points.
    TooFewPoints,
    /// Every point equal: R^2 is undefined.
    Constant,
}

/// One fitted curve: its rate (1/tau, or alpha), its floor `a` (definition B), quality.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    pub rate: f64,
    pub a: Option<f64>,
    pub sse: f64,
    pub r2: f64,
    pub aic: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecayFit {
    /// `1 / rate` of the exponential; `None` when the best fit does not decay (rate 0).
    pub tau: Option<f64>,
    pub exponential: Curve,
    pub power: Curve,
    pub points: usize,
}

impl DecayFit {
    /// Whether the exponential explains the trace better than the power law (lower AIC).
    pub fn exponential_preferred(&self) -> bool {
        self.exponential.aic < self.power.aic
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    Fitted(DecayFit),
    Excluded(Exclusion),
}

impl Decay {
    /// The fit, unless the trace was excluded.
    pub fn fitted(&self) -> Option<&DecayFit> {
        match self {
            Decay::Fitted(fit) => Some(fit),
            Decay::Excluded(_) => None,
        }
    }
}

/// The retention definition a run's decay statistics fit (see the module's documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Lag retention, `exp(-k / tau)`.
    #[default]
    A,
    /// Lag retention with a floor, `a + (1 - a) exp(-k / tau)`.
    AFloor,
    /// Lag retention, each lag weighted by its number of pairs.
    AWeighted,
    /// p_true from first learned, `a + (y_0 - a) exp(-j / tau)`.
    B,
}

impl Retention {
    pub const ALL: &'static [Retention] = &[Retention::A, Retention::AFloor, Retention::AWeighted, Retention::B];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::A => "a",
            Retention::AFloor => "a_floor",
            Retention::AWeighted => "a_weighted",
            Retention::B => "b",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == text)
    }

    /// The definition as a page states it.
    pub fn label(self) -> &'static str {
        match self {
            Retention::A => "A: lag retention, exp(-k/tau)",
            Retention::AFloor => "A with a floor: a + (1-a) exp(-k/tau)",
            Retention::AWeighted => "A weighted by the pairs at each lag: exp(-k/tau)",
            Retention::B => "B: p_true from first learned, a + (y0-a) exp(-j/tau)",
        }
    }

    /// Whether the fit reads the p_true trace (else only the correctness trace).
    pub fn reads_p_true(self) -> bool {
        self == Retention::B
    }

    /// Fits one sample's trace (`correct[t-1]`, `p_true[t-1]` at epoch t).
    pub fn fit(self, correct: &[bool], p_true: &[f32]) -> Decay {
        match self {
            Retention::A => fit_lag_retention(correct),
            Retention::AFloor => fit_lag_retention_floor(correct),
            Retention::AWeighted => fit_lag_retention_weighted(correct),
            Retention::B => fit_p_true(correct, p_true),
        }
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Definition A's points `(k, R(k))` for a correctness trace (`correct[t-1]` is epoch t).
pub fn lag_retention(correct: &[bool]) -> Vec<(f64, f64)> {
    lag_points(correct).into_iter().map(|(k, y)| (k as f64, y)).collect()
}

/// [`lag_retention`] with integer lags.
fn lag_points(correct: &[bool]) -> Vec<(usize, f64)> {
    lag_counts(correct).into_iter().map(|(k, kept, starts)| (k, kept as f64 / starts as f64)).collect()
}

/// Per lag k with at least one start: `(k, kept(k), starts(k))`. The counts come from bit
/// sets: with `C` the trace's bits, `starts(k) = |C ∩ [0, T-k)|` and `kept(k) = |C ∩ (C >> k)|`,
/// 64 epochs per word.
fn lag_counts(correct: &[bool]) -> Vec<(usize, usize, usize)> {
    let t = correct.len();
    let words = t.div_ceil(64);
    let mut bits = vec![0u64; words + 1];
    for (i, &c) in correct.iter().enumerate() {
        bits[i / 64] |= u64::from(c) << (i % 64);
    }
    // prefix[i] = correct epochs among the first i.
    let mut prefix = Vec::with_capacity(t + 1);
    prefix.push(0usize);
    for &c in correct {
        prefix.push(prefix.last().unwrap() + usize::from(c));
    }
    (1..t)
        .filter_map(|k| {
            let starts = prefix[t - k];
            if starts == 0 {
                return None;
            }
            // Bits i with i + k < T are exactly those whose shifted partner exists.
            let (word_shift, bit_shift) = (k / 64, k % 64);
            let mut kept = 0;
            for w in 0..words - word_shift {
                let low = bits[w + word_shift] >> bit_shift;
                let high = if bit_shift == 0 { 0 } else { bits[w + word_shift + 1] << (64 - bit_shift) };
                kept += (bits[w] & (low | high)).count_ones() as usize;
            }
            Some((k, kept, starts))
        })
        .collect()
}

/// Definition A: `exp(-k / tau)` to the lag-retention points.
pub fn fit_lag_retention(correct: &[bool]) -> Decay {
    if !correct.iter().any(|&c| c) {
        return Decay::Excluded(Exclusion::NeverLearned);
    }
    fit(Problem { points: &lag_points(correct), weights: None, anchor: 1.0, with_floor: false })
}

/// Definition A with a floor: `a + (1 - a) exp(-k / tau)` to the lag-retention points.
pub fn fit_lag_retention_floor(correct: &[bool]) -> Decay {
    if !correct.iter().any(|&c| c) {
        return Decay::Excluded(Exclusion::NeverLearned);
    }
    fit(Problem { points: &lag_points(correct), weights: None, anchor: 1.0, with_floor: true })
}

/// Definition A weighted: `exp(-k / tau)` to the lag-retention points, the point at lag k
/// weighted by `starts(k)`, the weights scaled to sum to the number of points.
pub fn fit_lag_retention_weighted(correct: &[bool]) -> Decay {
    if !correct.iter().any(|&c| c) {
        return Decay::Excluded(Exclusion::NeverLearned);
    }
    let counts = lag_counts(correct);
    let points: Vec<(usize, f64)> = counts.iter().map(|&(k, kept, starts)| (k, kept as f64 / starts as f64)).collect();
    let total: usize = counts.iter().map(|c| c.2).sum();
    let weights: Vec<f64> = counts.iter().map(|c| c.2 as f64 * counts.len() as f64 / total as f64).collect();
    fit(Problem { points: &points, weights: Some(&weights), anchor: 1.0, with_floor: false })
}

/// Definition B: `a + (y_0 - a) exp(-j / tau)` to the p_true trace from the first epoch the
/// sample was correct, `y_0` its p_true then; the points are the lags j >= 1 (the curve passes
/// through y_0 at j = 0 by construction, so that point carries no information).
pub fn fit_p_true(correct: &[bool], p_true: &[f32]) -> Decay {
    let Some(first) = correct.iter().position(|&c| c) else {
        return Decay::Excluded(Exclusion::NeverLearned);
    };
    let points: Vec<(usize, f64)> = p_true[first..].iter().enumerate().skip(1).map(|(j, &p)| (j, f64::from(p))).collect();
    fit(Problem { points: &points, weights: None, anchor: f64::from(p_true[first]), with_floor: true })
}

/// One least-squares problem: points `(lag, y)`, optional weights, the curve's value at lag 0
/// (`anchor`), and whether it has a free floor.
#[derive(Clone, Copy)]
struct Problem<'a> {
    points: &'a [(usize, f64)],
    weights: Option<&'a [f64]>,
    anchor: f64,
    with_floor: bool,
}

impl Problem<'_> {
    fn weight(&self, i: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[i])
    }
}

fn fit(problem: Problem<'_>) -> Decay {
    let Problem { points, with_floor, .. } = problem;
    if points.len() < MIN_POINTS {
        return Decay::Excluded(Exclusion::TooFewPoints);
    }
    let total_weight: f64 = (0..points.len()).map(|i| problem.weight(i)).sum();
    let mean = points.iter().enumerate().map(|(i, p)| problem.weight(i) * p.1).sum::<f64>() / total_weight;
    let ss_tot: f64 = points.iter().enumerate().map(|(i, p)| problem.weight(i) * (p.1 - mean).powi(2)).sum();
    if ss_tot == 0.0 {
        return Decay::Excluded(Exclusion::Constant);
    }
    let params = if with_floor { 2.0 } else { 1.0 };
    let curve = |shape: Shape| {
        let (rate, a, sse) = Curves::new(problem, shape).best_rate(GRID_POINTS);
        let n = points.len() as f64;
        Curve { rate, a: with_floor.then_some(a), sse, r2: 1.0 - sse / ss_tot, aic: n * (sse.max(f64::MIN_POSITIVE) / n).ln() + 2.0 * params }
    };
    let exponential = curve(Shape::Exponential);
    let power = curve(Shape::Power);
    Decay::Fitted(DecayFit { tau: (exponential.rate > 0.0).then(|| 1.0 / exponential.rate), exponential, power, points: points.len() })
}

/// The decaying part of a curve at integer lag k: `exp(-rate k)` or `(1 + k)^-rate`, that is
/// `exp(-rate x)` with x = k or x = ln(1 + k).
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Exponential,
    Power,
}

/// One curve family over one trace's points, with a table of `exp(-rate x(k))` for every lag
/// up to the largest, refilled per rate. The table costs no `exp` per point: the exponential
/// is powers of `exp(-rate)`, the power law multiplies `p^-rate` of the primes p (one `exp`
/// each) along each number's smallest prime factor. Rounding differs from calling `exp` per
/// point by a few units in the last place.
struct Curves<'a> {
    points: &'a [(usize, f64)],
    weights: Option<&'a [f64]>,
    anchor: f64,
    shape: Shape,
    with_floor: bool,
    /// x(k) for every lag 0..=max (at least; shared by the thread's fits).
    x: Rc<[f64]>,
    /// Smallest prime factor of n = 1 + k (power law only), 0 for n < 2.
    factor: Rc<[usize]>,
    table: Vec<f64>,
    /// Where lag 0 sits in `table`: 0 for the exponential, 1 for the power law (indexed by n).
    offset: usize,
}

impl<'a> Curves<'a> {
    fn new(problem: Problem<'a>, shape: Shape) -> Self {
        let Problem { points, weights, anchor, with_floor } = problem;
        let max = points.iter().map(|p| p.0).max().unwrap_or(0);
        let (x, factor) = if shape == Shape::Power { power_lags(max) } else { exponential_lags(max) };
        Self { points, weights, anchor, shape, with_floor, x, factor, table: vec![0.0; max + 2], offset: usize::from(shape == Shape::Power) }
    }

    /// Point i's weight (1 unweighted).
    fn w(&self, i: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[i])
    }

    /// Fills the table for `rate`: `exp(-rate x(k))` sits at index `k + offset`.
    fn fill(&mut self, rate: f64) {
        match self.shape {
            Shape::Exponential => {
                let base = (-rate).exp();
                let mut value = 1.0;
                for entry in &mut self.table {
                    *entry = value;
                    value *= base;
                }
            }
            Shape::Power => {
                // table[n] = n^-rate, n = 1 + k; table[0] is unused.
                self.table[1] = 1.0;
                for n in 2..self.table.len() {
                    let p = self.factor[n];
                    self.table[n] = if p == n { (-rate * self.x[n - 1]).exp() } else { self.table[p] * self.table[n / p] };
                }
            }
        }
    }

    /// `exp(-rate x(k))` for the filled rate.
    fn e(&self, k: usize) -> f64 {
        self.table[k + self.offset]
    }

    /// For the filled rate: the floor (0 without one, else its least-squares value) and the
    /// SSE of `c + (y0 - c) exp(-rate x)`.
    fn profile(&self) -> (f64, f64) {
        self.profile_in(&self.table)
    }

    /// [`Curves::profile`] over a table filled elsewhere (a grid rate's, from [`GRID_TABLES`]).
    fn profile_in(&self, table: &[f64]) -> (f64, f64) {
        let e = |k: usize| table[k + self.offset];
        let y0 = self.anchor;
        // With r = (y - y0 e) - c (1 - e), the floor is the weighted regression of y - y0 e on 1 - e.
        let a = if self.with_floor {
            let (mut num, mut den) = (0.0, 0.0);
            for (i, &(k, y)) in self.points.iter().enumerate() {
                let (e, w) = (e(k), self.w(i));
                num += w * (y - y0 * e) * (1.0 - e);
                den += w * (1.0 - e) * (1.0 - e);
            }
            if den > 0.0 { num / den } else { 0.0 }
        } else {
            0.0
        };
        let sse = self.points.iter().enumerate().map(|(i, &(k, y))| self.w(i) * (y - a - (y0 - a) * e(k)).powi(2)).sum();
        (a, sse)
    }

    /// The SSE at every rate of the grid. The grid's tables do not depend on the trace (a
    /// longer table only adds entries at its end), so each thread fills them once per shape
    /// and grid size and every trace reads them: no `exp` per trace on the grid.
    fn grid_sse(&mut self, grid: &[f64], grid_points: usize) -> Vec<f64> {
        let need = self.table.len();
        let offset = self.offset;
        let key = (self.shape == Shape::Power, grid_points);
        let cached = GRID_TABLES.with(|cache| cache.borrow().get(&key).filter(|t| t.stride >= need).cloned());
        let tables = match cached {
            Some(found) => found,
            None => {
                let mut rows = Vec::with_capacity(grid.len() * need);
                let mut squares = Vec::with_capacity(grid.len() * need);
                for &rate in grid {
                    self.fill(rate);
                    rows.extend_from_slice(&self.table);
                    // squares[j] = sum of e(k)^2 for k = 1..=j.
                    let mut sum = 0.0;
                    squares.push(0.0);
                    for &e in &self.table[offset + 1..] {
                        sum += e * e;
                        squares.push(sum);
                    }
                    squares.resize(rows.len(), sum);
                }
                let built = GridTables { stride: need, rows: rows.into(), squares: squares.into() };
                GRID_TABLES.with(|cache| cache.borrow_mut().insert(key, built.clone()));
                built
            }
        };
        let stride = tables.stride;
        let row = |g: usize| &tables.rows[g * stride..(g + 1) * stride];
        // Definition A's lags are 1..=m (a lag is dropped only when no epoch that early was
        // correct, so only the longest ones go): SSE = sum y^2 - 2 sum y e + sum e^2, with the
        // last sum read from the table of squares and the middle one a contiguous dot product.
        let contiguous = self.points.iter().enumerate().all(|(i, p)| p.0 == i + 1);
        if self.with_floor || !contiguous || self.weights.is_some() || self.anchor != 1.0 {
            return (0..grid.len()).map(|g| self.profile_in(row(g)).1).collect();
        }
        let m = self.points.len();
        let ys: Vec<f64> = self.points.iter().map(|p| p.1).collect();
        let sum_y2: f64 = ys.iter().map(|y| y * y).sum();
        (0..grid.len())
            .map(|g| {
                let e = &row(g)[offset + 1..offset + 1 + m];
                let mut lanes = [0.0f64; 4];
                let (ys4, es4) = (ys.chunks_exact(4), e.chunks_exact(4));
                let tail: f64 = ys4.remainder().iter().zip(es4.remainder()).map(|(y, e)| y * e).sum();
                for (y, e) in ys4.zip(es4) {
                    for lane in 0..4 {
                        lanes[lane] += y[lane] * e[lane];
                    }
                }
                let dot = lanes[0] + lanes[1] + lanes[2] + lanes[3] + tail;
                (sum_y2 - 2.0 * dot + tables.squares[g * stride + m]).max(0.0)
            })
            .collect()
    }

    fn sse(&mut self, rate: f64) -> f64 {
        self.fill(rate);
        self.profile().1
    }

    /// d SSE / d rate at the profiled floor (envelope theorem):
    /// `2 (y0 - a) sum w r x exp(-rate x)`.
    fn slope(&mut self, rate: f64) -> f64 {
        self.fill(rate);
        let (a, _) = self.profile();
        let y0 = self.anchor;
        2.0 * (y0 - a)
            * self
                .points
                .iter()
                .enumerate()
                .map(|(i, &(k, y))| {
                    let e = self.e(k);
                    self.w(i) * (y - a - (y0 - a) * e) * self.x[k] * e
                })
                .sum::<f64>()
    }

    /// Without a floor (so y0 = 1): the slope and its derivative, `2 sum w (y - e) x e` and
    /// `2 sum w x^2 e (2 e - y)`, in one pass.
    fn slope_and_curvature(&mut self, rate: f64) -> (f64, f64) {
        self.fill(rate);
        let (mut g, mut dg) = (0.0, 0.0);
        for (i, &(k, y)) in self.points.iter().enumerate() {
            let (e, x, w) = (self.e(k), self.x[k], self.w(i));
            g += w * (y - e) * x * e;
            dg += w * x * x * e * (2.0 * e - y);
        }
        (2.0 * g, 2.0 * dg)
    }

    /// The slope's zero in `[lo, hi]` (slope negative at `lo`, positive at `hi`) without a
    /// floor: Newton's method from the secant point, each step kept inside the shrinking
    /// bracket (a step that would leave it, or a curvature that is not positive, bisects).
    fn newton(&mut self, mut lo: f64, slope_lo: f64, mut hi: f64, slope_hi: f64) -> f64 {
        let mut rate = (lo * slope_hi - hi * slope_lo) / (slope_hi - slope_lo);
        if !(rate > lo && rate < hi) {
            rate = 0.5 * (lo + hi);
        }
        for _ in 0..200 {
            let (g, dg) = self.slope_and_curvature(rate);
            if g == 0.0 {
                break;
            }
            if g < 0.0 {
                lo = rate;
            } else {
                hi = rate;
            }
            let mut next = rate - g / dg;
            if !(dg > 0.0 && next > lo && next < hi) {
                next = 0.5 * (lo + hi);
            }
            let done = (next - rate).abs() <= 1e-12 * next || hi - lo <= 1e-15 * hi;
            rate = next;
            if done {
                break;
            }
        }
        rate
    }

    /// The rate in [0, MAX_RATE] with the smallest SSE: `(rate, floor, sse)`. Every local
    /// minimum of a coarse grid (noisy traces can have more than one) is refined between its
    /// neighbours: the slope's zero in whichever half of that cell changes sign, by the
    /// Illinois variant of regula falsi (superlinear, never leaves the bracket). The lowest
    /// refined SSE wins.
    fn best_rate(mut self, grid_points: usize) -> (f64, f64, f64) {
        let grid = grid_rates(grid_points);
        let sse = self.grid_sse(&grid, grid_points);
        let last = grid.len() - 1;
        // A plateau (equal neighbours) counts once, at its first point.
        let minima: Vec<usize> = (0..grid.len()).filter(|&i| (i == 0 || sse[i] < sse[i - 1]) && (i == last || sse[i] <= sse[i + 1])).collect();
        let mut best = (grid[0], f64::INFINITY);
        for i in minima {
            let rate = self.refine(grid[i.saturating_sub(1)], grid[i], grid[(i + 1).min(last)]);
            // The refined rate, unless it is worse than the grid point it started from: with a
            // free floor the SSE can fall all the way to rate 0+ (the floor running off to
            // -inf: a straight line), where the floor is lost to rounding and the SSE jumps.
            let candidate = match self.sse(rate) {
                refined if refined <= sse[i] => (rate, refined),
                _ => (grid[i], self.sse(grid[i])),
            };
            if candidate.1 < best.1 {
                best = candidate;
            }
        }
        self.fill(best.0);
        let (a, sse) = self.profile();
        (best.0, a, sse)
    }

    /// The zero of the slope next to grid point `mid`, downhill towards `lo` or `hi`, or `mid`
    /// when there is none. The half cell is bracketed at its end, or, when the slope turns
    /// twice inside it (a noisy trace), at the first sign change among 8 points across it.
    fn refine(&mut self, lo: f64, mid: f64, hi: f64) -> f64 {
        let slope_mid = self.slope(mid);
        let end = if slope_mid > 0.0 { lo } else { hi };
        if slope_mid == 0.0 || end == mid {
            return mid;
        }
        let downhill = |slope: f64| if slope_mid > 0.0 { slope < 0.0 } else { slope > 0.0 };
        let (mut near, mut far) = ((mid, slope_mid), (end, self.slope(end)));
        if !downhill(far.1) {
            // 8 log-spaced points from mid to end (the grid is log-spaced; 0 is linear).
            let step = |i: f64| if lo == 0.0 && end == 0.0 { mid * (1.0 - i / 8.0) } else { mid * (end / mid).powf(i / 8.0) };
            let Some(flip) = (1..8)
                .map(|i| step(f64::from(i)))
                .map(|r| (r, self.slope(r)))
                .scan(near, |previous, point| {
                    let pair = (*previous, point);
                    *previous = point;
                    Some(pair)
                })
                .find(|(_, point)| downhill(point.1))
            else {
                return mid;
            };
            (near, far) = flip;
        }
        let ((mut lo, mut slope_lo), (mut hi, mut slope_hi)) = if near.0 < far.0 { (near, far) } else { (far, near) };
        if !(slope_lo < 0.0 && slope_hi > 0.0) {
            return mid;
        }
        if !self.with_floor {
            return self.newton(lo, slope_lo, hi, slope_hi);
        }
        let mut rate = mid;
        let mut previous = f64::NAN;
        let mut kept = 0i8;
        for _ in 0..200 {
            let mut c = (lo * slope_hi - hi * slope_lo) / (slope_hi - slope_lo);
            if !(c > lo && c < hi) {
                c = 0.5 * (lo + hi);
            }
            let g = self.slope(c);
            rate = c;
            if g == 0.0 || (c - previous).abs() <= 1e-12 * c {
                break;
            }
            previous = c;
            if g < 0.0 {
                (lo, slope_lo) = (c, g);
                if kept == -1 {
                    slope_hi *= 0.5;
                }
                kept = -1;
            } else {
                (hi, slope_hi) = (c, g);
                if kept == 1 {
                    slope_lo *= 0.5;
                }
                kept = 1;
            }
        }
        rate
    }
}

const MAX_RATE: f64 = 100.0;

/// The coarse grid of `grid_points`: 0, then `grid_points + 1` log-spaced rates from
/// 1e-8 MAX_RATE to MAX_RATE.
fn grid_rates(grid_points: usize) -> Rc<[f64]> {
    GRID_RATES.with(|cache| {
        cache
            .borrow_mut()
            .entry(grid_points)
            .or_insert_with(|| {
                std::iter::once(0.0).chain((0..=grid_points).map(|i| MAX_RATE * 10f64.powf(-8.0 + 8.0 * i as f64 / grid_points as f64))).collect()
            })
            .clone()
    })
}

/// x(k) = k for lags 0..=max, and no factors.
fn exponential_lags(max: usize) -> (Rc<[f64]>, Rc<[usize]>) {
    LAGS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0.len() <= max {
            cache.0 = (0..=max.max(127)).map(|k| k as f64).collect();
        }
        (cache.0.clone(), Rc::from([]))
    })
}

/// x(k) = ln(1 + k) for lags 0..=max, and the smallest prime factor of every n <= max + 1.
fn power_lags(max: usize) -> (Rc<[f64]>, Rc<[usize]>) {
    LAGS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.1.len() <= max {
            let top = max.max(127);
            let mut factor = vec![0usize; top + 2];
            for n in 2..factor.len() {
                if factor[n] == 0 {
                    for multiple in (n..factor.len()).step_by(n) {
                        if factor[multiple] == 0 {
                            factor[multiple] = n;
                        }
                    }
                }
            }
            cache.1 = (0..=top).map(|k| (1.0 + k as f64).ln()).collect();
            cache.2 = factor.into();
        }
        (cache.1.clone(), cache.2.clone())
    })
}

thread_local! {
    static GRID_RATES: std::cell::RefCell<std::collections::HashMap<usize, Rc<[f64]>>> = Default::default();
    /// Lag tables shared by a thread's fits, grown to the longest trace: x(k) = k, x(k) =
    /// ln(1 + k), and smallest prime factors.
    static LAGS: std::cell::RefCell<(Rc<[f64]>, Rc<[f64]>, Rc<[usize]>)> = std::cell::RefCell::new((Rc::from([]), Rc::from([]), Rc::from([])));
    /// Per (power law?, grid points): the grid's tables.
    static GRID_TABLES: std::cell::RefCell<std::collections::HashMap<(bool, usize), GridTables>> = Default::default();
}

/// `exp(-rate x(k))` for every grid rate and lag, filled by the same code as a single rate's
/// table (so a fit reads exactly the values it would have computed), in rows of `stride`;
/// and per row the running sums of their squares from lag 1.
#[derive(Clone)]
struct GridTables {
    stride: usize,
    rows: Rc<[f64]>,
    squares: Rc<[f64]>,
}

/// Rates of the coarse grid: 0, then 33 log-spaced rates from 1e-8 MAX_RATE to MAX_RATE
/// (neighbours a factor 1.78 apart; 17 rates miss minima). A test checks that it finds the minimum a 257-point grid
/// finds on random traces.
const GRID_POINTS: usize = 32;

/// Fits over a run, counted: how many were fitted, how many excluded for each reason, the
/// mean and median R^2 of the exponential fits (the median of an even count is the mean of
/// the middle two), and how often the exponential beat the power law.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecaySummary {
    pub fitted: usize,
    pub never_learned: usize,
    pub too_few_points: usize,
    pub constant: usize,
    pub mean_r2: Option<f64>,
    pub median_r2: Option<f64>,
    pub exponential_preferred: usize,
}

pub fn summarize_fits(fits: &[Decay]) -> DecaySummary {
    let mut summary = DecaySummary::default();
    let mut r2s = Vec::new();
    for fit in fits {
        match fit {
            Decay::Fitted(f) => {
                summary.fitted += 1;
                r2s.push(f.exponential.r2);
                summary.exponential_preferred += usize::from(f.exponential_preferred());
            }
            Decay::Excluded(Exclusion::NeverLearned) => summary.never_learned += 1,
            Decay::Excluded(Exclusion::TooFewPoints) => summary.too_few_points += 1,
            Decay::Excluded(Exclusion::Constant) => summary.constant += 1,
        }
    }
    summary.mean_r2 = (summary.fitted > 0).then(|| r2s.iter().sum::<f64>() / summary.fitted as f64);
    r2s.sort_by(f64::total_cmp);
    let middle = r2s.len() / 2;
    summary.median_r2 = match r2s.len() {
        0 => None,
        n if n % 2 == 1 => Some(r2s[middle]),
        _ => Some((r2s[middle - 1] + r2s[middle]) / 2.0),
    };
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lag_retention_counts_kept_correctness() {
        // Correct at epochs 1, 2, 4. Lag 1: from 1 (kept), 2 (lost), 4 has no t+1 -> 1/2.
        let points = lag_retention(&[true, true, false, true]);
        assert_eq!(points, vec![(1.0, 0.5), (2.0, 0.5), (3.0, 1.0)]);
    }

    #[test]
    fn exclusions_say_why() {
        assert_eq!(fit_lag_retention(&[false, false, false]), Decay::Excluded(Exclusion::NeverLearned));
        assert_eq!(fit_p_true(&[false, true, true], &[0.1, 0.9, 0.9]), Decay::Excluded(Exclusion::TooFewPoints));
        assert_eq!(fit_lag_retention(&[true; 6]), Decay::Excluded(Exclusion::Constant));
        let summary = summarize_fits(&[Decay::Excluded(Exclusion::Constant), fit_p_true(&[true; 5], &[0.9, 0.7, 0.6, 0.55, 0.52])]);
        assert_eq!((summary.fitted, summary.constant), (1, 1));
        let fits = [
            [true, false, true, false, true, false],
            [true, true, false, true, true, false],
            [true, true, true, false, false, false],
            [true, true, true, true, true, false],
        ]
        .map(|t| fit_lag_retention(&t));
        let mut r2: Vec<f64> = fits.iter().map(|f| f.fitted().unwrap().exponential.r2).collect();
        r2.sort_by(f64::total_cmp);
        let summary = summarize_fits(&fits);
        assert_eq!(summary.median_r2, Some((r2[1] + r2[2]) / 2.0));
        assert_eq!(summary.mean_r2, Some(r2.iter().sum::<f64>() / 4.0));
    }

    #[test]
    fn the_coarse_grid_finds_the_fine_grids_minimum() {
        // Random and partly random traces of 20 to 120 epochs, every definition, both shapes.
        let mut rng = crate::rng::SplitMix64::new(1);
        let mut unit = move || rng.unit_f64();
        for trace in 0..400 {
            let epochs = 20 + trace % 100;
            let bias = unit();
            let correct: Vec<bool> = (0..epochs).map(|_| unit() < bias).collect();
            let p_true: Vec<f64> = (0..epochs).map(|j| 0.3 + 0.7 * (-(j as f64) / (1.0 + 30.0 * bias)).exp() * (0.8 + 0.2 * unit())).collect();
            let a_points = lag_points(&correct);
            let weights: Vec<f64> = lag_counts(&correct).iter().map(|c| c.2 as f64 / 7.0).collect();
            let b_points: Vec<(usize, f64)> = p_true.iter().copied().enumerate().skip(1).collect();
            let problems = [
                Problem { points: &a_points, weights: None, anchor: 1.0, with_floor: false },
                Problem { points: &a_points, weights: None, anchor: 1.0, with_floor: true },
                Problem { points: &a_points, weights: Some(&weights), anchor: 1.0, with_floor: false },
                Problem { points: &b_points, weights: None, anchor: p_true[0], with_floor: true },
            ];
            for problem in problems {
                if problem.points.len() < MIN_POINTS {
                    continue;
                }
                for shape in [Shape::Exponential, Shape::Power] {
                    let coarse = Curves::new(problem, shape).best_rate(GRID_POINTS);
                    let fine = Curves::new(problem, shape).best_rate(256);
                    assert!(coarse.2 <= fine.2 * (1.0 + 1e-9) + 1e-300, "trace {trace}: coarse SSE {} above fine {}", coarse.2, fine.2);
                    // On a plateau (every point decayed to the floor) the rate is not
                    // identified; elsewhere both grids must find the same one.
                    let identified = Curves::new(problem, shape).sse(fine.0 * 1.01) > fine.2 * (1.0 + 1e-12);
                    if identified {
                        assert!((coarse.0 - fine.0).abs() <= 1e-6 * fine.0.max(1e-12), "trace {trace}: rate {} vs {}", coarse.0, fine.0);
                    }
                }
            }
        }
    }

    #[test]
    fn the_best_rate_is_never_worse_than_its_grid() {
        // Lag retention falling almost linearly from 0.98 to 0.67, then 1 at the two longest
        // lags. With a free floor the SSE keeps falling towards rate 0+ (the floor runs off to
        // -inf); the refinement used to follow it down to a rate where the floor rounds away
        // (SSE 0.378) and return that, above the grid's own best point (0.126).
        let points: Vec<(usize, f64)> = (1..=56).map(|k| (k, (58 - k) as f64 / (59 - k) as f64)).chain([(57, 1.0), (58, 1.0)]).collect();
        let problem = Problem { points: &points, weights: None, anchor: 1.0, with_floor: true };
        for shape in [Shape::Exponential, Shape::Power] {
            let grid = grid_rates(GRID_POINTS);
            let mut curves = Curves::new(problem, shape);
            let grid_best = grid.iter().map(|&rate| curves.sse(rate)).fold(f64::INFINITY, f64::min);
            let (rate, _, sse) = Curves::new(problem, shape).best_rate(GRID_POINTS);
            assert!(sse <= grid_best, "rate {rate}: SSE {sse} above the grid's best {grid_best}");
        }
    }

    #[test]
    fn definition_b_is_anchored_at_the_observed_start() {
        // p_true decays from 0.6 at first learning towards 0.2 with tau = 3: the old
        // definition (anchored at 1) cannot fit it exactly, the anchored one does.
        let correct = [false, true, true, true, true, true, true, true, true, true];
        let p_true: Vec<f32> = (0..10).map(|t| if t == 0 { 0.1 } else { 0.2 + 0.4 * (-((t - 1) as f32) / 3.0).exp() }).collect();
        let Decay::Fitted(fit) = fit_p_true(&correct, &p_true) else { panic!("excluded") };
        assert!((fit.tau.unwrap() - 3.0).abs() < 1e-4, "tau {:?}", fit.tau);
        assert!((fit.exponential.a.unwrap() - 0.2).abs() < 1e-5);
        assert!(fit.exponential.r2 > 0.999_999);
        assert_eq!(fit.points, 8, "lags 1..=8 after the anchor");
    }

    #[test]
    fn the_floor_fits_a_coin_flip_level_that_plain_a_cannot() {
        // Retention that drops to a level of 0.5 and stays: plain A has R^2 < 0 or near it
        // (no exponential to 0 fits a plateau at 0.5); the floor finds a = 0.5.
        let correct: Vec<bool> = (0..60).map(|t| t < 3 || t % 2 == 0).collect();
        let (Decay::Fitted(plain), Decay::Fitted(floor)) = (fit_lag_retention(&correct), fit_lag_retention_floor(&correct)) else { panic!("excluded") };
        assert!(plain.exponential.r2 < 0.1, "plain A R^2 {}", plain.exponential.r2);
        assert!(floor.exponential.r2 > plain.exponential.r2);
        assert!((floor.exponential.a.unwrap() - 0.5).abs() < 0.1, "floor {:?}", floor.exponential.a);
    }

    #[test]
    fn weighting_by_pairs_leans_on_the_short_lags() {
        // Equal weights reproduce the unweighted fit; pair weights change it.
        let correct: Vec<bool> = (0..40).map(|t| (t * 7) % 5 != 0 && t != 30).collect();
        let points = lag_points(&correct);
        let ones = vec![1.0; points.len()];
        let plain = fit(Problem { points: &points, weights: None, anchor: 1.0, with_floor: false });
        let unit = fit(Problem { points: &points, weights: Some(&ones), anchor: 1.0, with_floor: false });
        let (Decay::Fitted(plain), Decay::Fitted(unit), Decay::Fitted(weighted)) = (plain, unit, fit_lag_retention_weighted(&correct)) else {
            panic!("excluded")
        };
        assert!((plain.exponential.rate - unit.exponential.rate).abs() <= 1e-9 * plain.exponential.rate);
        assert!((plain.exponential.rate - weighted.exponential.rate).abs() > 1e-6 * plain.exponential.rate);
    }

    proptest! {
        #[test]
        fn lag_retention_counts_as_defined(correct in proptest::collection::vec(any::<bool>(), 0..200)) {
            // The definition, pair by pair, against the bit-set counts.
            let t = correct.len();
            let naive: Vec<(f64, f64)> = (1..t)
                .filter_map(|k| {
                    let starts = (0..t - k).filter(|&i| correct[i]).count();
                    let kept = (0..t - k).filter(|&i| correct[i] && correct[i + k]).count();
                    (starts > 0).then(|| (k as f64, kept as f64 / starts as f64))
                })
                .collect();
            prop_assert_eq!(lag_retention(&correct), naive);
        }

        #[test]
        fn fits_recover_tau_from_noise_free_exponential_traces(tau in 0.3f64..40.0, a in 0.0f64..0.8, epochs in 8usize..60) {
            // Definition B's model, exactly.
            let p: Vec<f32> = (0..epochs).map(|j| (a + (1.0 - a) * (-(j as f64) / tau).exp()) as f32).collect();
            let correct = vec![true; epochs];
            let Decay::Fitted(fit) = fit_p_true(&correct, &p) else { panic!("fitted") };
            // f32 inputs: tau to about 1e-4 relative, unless the curve is flat within f32.
            let flat = (-(epochs as f64 - 1.0) / tau).exp() > 0.999;
            if !flat {
                prop_assert!((fit.tau.unwrap() - tau).abs() / tau < 2e-3, "tau {} fitted {:?}", tau, fit.tau);
                prop_assert!(fit.exponential.r2 > 0.9999);
                prop_assert!((fit.exponential.a.unwrap() - a).abs() < 1e-3);
            }
        }

        #[test]
        fn lag_retention_fit_recovers_an_exact_exponential(tau in 0.5f64..30.0) {
            let points: Vec<(usize, f64)> = (1..30).map(|k| (k, (-(k as f64) / tau).exp())).collect();
            let Decay::Fitted(fit) = fit(Problem { points: &points, weights: None, anchor: 1.0, with_floor: false }) else { panic!("fitted") };
            prop_assert!((fit.tau.unwrap() - tau).abs() / tau < 1e-9, "tau {} fitted {:?}", tau, fit.tau);
            prop_assert!(fit.exponential.aic < fit.power.aic, "an exponential is best described as one");
        }
    }
}

"""Independent reference values for the `dynamics` crate, computed with numpy and scipy on
seeded inputs. Writes dynamics/tests/fixtures/reference.json (inputs and expected outputs);
`cargo test -p dynamics --test reference` checks the Rust results against it.

    python bench/reference_stats.py     # needs numpy and scipy (pip install numpy scipy)
    python bench/reference_stats.py --scores-only   # only reference_scores.json (issue 17)
    python bench/reference_stats.py --rbf-only      # only reference_rbf.json (issue 22)
"""
import json
import math
import os

import numpy as np
from scipy import optimize, stats

rng = np.random.default_rng(20261128)


def correlations(x, y):
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    kt = stats.kendalltau(x, y, variant="b", method="asymptotic")
    return {
        "pearson": [float(pr.statistic), float(pr.pvalue)],
        "spearman": [float(sr.statistic), float(sr.pvalue)],
        "kendall": [float(kt.statistic), float(kt.pvalue)],
    }


def lag_retention(correct):
    t = len(correct)
    points = []
    for k in range(1, t):
        starts = [i for i in range(t - k) if correct[i]]
        if starts:
            points.append((k, sum(1 for i in starts if correct[i + k]) / len(starts)))
    return points


def fit_curve(xs, ys, floor, weights=None, anchor=1.0):
    """Weighted least squares of `a + (anchor - a) exp(-rate x)` by scipy's bounded scalar
    minimiser on the rate, the floor a profiled out by linear least squares (floor) or fixed
    at 0; polished by curve_fit (sigma = 1/sqrt(w)). R^2 about the weighted mean."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    w = np.ones_like(ys) if weights is None else np.asarray(weights, float)

    def model(x, rate, a):
        return a + (anchor - a) * np.exp(-rate * x)

    def profiled(rate):
        e = np.exp(-rate * xs)
        if floor:
            den = np.sum(w * (1 - e) ** 2)
            a = np.sum(w * (ys - anchor * e) * (1 - e)) / den if den > 0 else 0.0
        else:
            a = 0.0
        return a, float(np.sum(w * (ys - model(xs, rate, a)) ** 2))

    grid = np.concatenate([[0.0], 100.0 * 10 ** np.linspace(-8, 0, 241)])
    best = min(grid, key=lambda r: profiled(r)[1])
    res = optimize.minimize_scalar(lambda r: profiled(r)[1], bounds=(max(best / 3, 0.0), best * 3 + 1e-12), method="bounded", options={"xatol": 1e-14})
    rate = res.x if profiled(res.x)[1] <= profiled(best)[1] else best
    sigma = None if weights is None else 1 / np.sqrt(w)
    if floor:
        popt, _ = optimize.curve_fit(model, xs, ys, p0=[rate, profiled(rate)[0]], sigma=sigma, xtol=1e-15, ftol=1e-15, gtol=1e-15, maxfev=100000)
        rate = popt[0]
    else:
        popt, _ = optimize.curve_fit(lambda x, r: model(x, r, 0.0), xs, ys, p0=[rate], sigma=sigma, xtol=1e-15, ftol=1e-15, gtol=1e-15, maxfev=100000)
        rate = popt[0]
    a, sse = profiled(rate)
    mean = np.sum(w * ys) / np.sum(w)
    ss_tot = float(np.sum(w * (ys - mean) ** 2))
    n, p = len(xs), (2 if floor else 1)
    return {"rate": float(rate), "a": float(a) if floor else None, "sse": sse, "r2": 1 - sse / ss_tot, "aic": n * math.log(max(sse, 2.2250738585072014e-308) / n) + 2 * p}


def decay(points, floor, weights=None, anchor=1.0):
    ks = [k for k, _ in points]
    ys = [y for _, y in points]
    return {"exponential": fit_curve(ks, ys, floor, weights, anchor), "power": fit_curve(np.log1p(ks), ys, floor, weights, anchor)}


def lag_pair_weights(correct):
    """Definition A weighted: each lag's number of pairs (epochs t correct with t + k in the
    trace), scaled to sum to the number of lags."""
    t = len(correct)
    starts = [sum(1 for i in range(t - k) if correct[i]) for k in range(1, t)]
    starts = [s for s in starts if s > 0]
    return [s * len(starts) / sum(starts) for s in starts]


def events(trace):
    """Toneva et al.: forgetting 1->0, learning 0->1 with c_0 = 0; first learned; unforgettable."""
    forgetting = learning = 0
    first = None
    previous = False
    for t, now in enumerate(trace):
        if previous and not now:
            forgetting += 1
        if not previous and now:
            learning += 1
            if first is None:
                first = t + 1
        previous = now
    return {"forgetting": forgetting, "learning": learning, "first_learned": first, "unforgettable": first is not None and forgetting == 0}


def cartography(p, correct):
    p = np.asarray(p, dtype=np.float64)
    return [float(p.mean()), float(p.std(ddof=0)), float(np.mean(correct))]


def top_set(scores, q):
    """Without ties: the round(q n) highest scores, by position."""
    size = max(1, int(round(q * len(scores))))
    return sorted(np.argsort(-np.asarray(scores), kind="stable")[:size].tolist())


def main():
    n = 300
    # Scores with ties (small integers, like forgetting counts) and a continuous pair.
    x_int = rng.poisson(2.0, n).astype(float)
    y_int = np.clip(x_int + rng.integers(-2, 3, n), 0, None).astype(float)
    x_cont = rng.normal(size=n)
    y_cont = 0.6 * x_cont + rng.normal(size=n)
    # Few samples and a weak relation: p-values far from 0.
    x_small = rng.integers(0, 5, 25).astype(float)
    y_small = np.clip(0.3 * x_small + rng.normal(size=25) * 2, 0, None).round()
    # A noisy forgetting trace: correct flips with a decaying retention.
    epochs = 40
    correct = []
    state = False
    for t in range(epochs):
        state = rng.random() < (0.85 if state else 0.35)
        correct.append(bool(state))
    first = correct.index(True)
    p_true = [0.0] * epochs
    for j in range(first, epochs):
        p_true[j] = float(np.float32(0.45 + 0.5 * math.exp(-(j - first) / 6.0) + 0.05 * rng.normal()))
    # Many samples' traces: events and cartography per sample.
    samples, t_len = 60, 25
    difficulty = rng.random(samples)
    traces = [[bool(rng.random() < min(0.95, (t + 1) / (t_len * d + 1))) for t in range(t_len)] for d in difficulty]
    traces[0] = [False] * t_len  # never learned
    traces[1] = [True] * t_len   # unforgettable from epoch 1
    p_traces = [[float(np.float32(rng.random())) for _ in range(t_len)] for _ in range(samples)]
    # Two continuous score vectors (no ties: the top-q sets are unique).
    s_a = rng.normal(size=500)
    s_b = 0.5 * s_a + rng.normal(size=500)
    set_a, set_b = top_set(s_a, 0.1), top_set(s_b, 0.1)
    jac = len(set(set_a) & set(set_b)) / len(set(set_a) | set(set_b))
    # Class level: labels, per-class mean, forgotten-into, similarities.
    classes = 4
    labels = rng.integers(0, classes, samples)
    predicted = [[int(labels[i]) if traces[i][t] else int((labels[i] + 1 + rng.integers(0, classes - 1)) % classes) for i in range(samples)] for t in range(t_len)]
    forgetting_counts = np.array([events(tr)["forgetting"] for tr in traces], dtype=float)
    per_class = [float(forgetting_counts[labels == c].mean()) if np.any(labels == c) else None for c in range(classes)]
    into = np.zeros((classes, classes), dtype=int)
    for t in range(1, t_len):
        for i in range(samples):
            if traces[i][t - 1] and not traces[i][t]:
                into[labels[i], predicted[t][i]] += 1
    confusion = rng.integers(0, 30, (classes, classes)) + np.diag(rng.integers(50, 100, classes))
    rates = confusion / confusion.sum(axis=1, keepdims=True)
    conf_sim = 0.5 * (rates + rates.T)
    np.fill_diagonal(conf_sim, 1.0)
    means = rng.normal(size=(classes, 8)).astype(np.float32)
    m64 = means.astype(np.float64)
    norms = np.linalg.norm(m64, axis=1)
    emb_sim = (m64 @ m64.T) / np.outer(norms, norms)
    iu = np.triu_indices(classes, 1)
    out = {
        "inputs": {
            "traces": traces, "p_traces": p_traces, "scores_a": s_a.tolist(), "scores_b": s_b.tolist(),
            "labels": labels.tolist(), "predicted": predicted, "confusion": confusion.tolist(), "means": means.astype(float).tolist(),
            "x_int": x_int.tolist(), "y_int": y_int.tolist(), "x_cont": x_cont.tolist(), "y_cont": y_cont.tolist(),
            "x_small": x_small.tolist(), "y_small": y_small.tolist(),
            "correct": correct, "p_true": p_true,
        },
        "expected": {
            "ties": correlations(x_int, y_int),
            "continuous": correlations(x_cont, y_cont),
            "small": correlations(x_small, y_small),
            "ranks": stats.rankdata(x_int).tolist(),
            "lag_retention": lag_retention(correct),
            "decay_a": decay(lag_retention(correct), False),
            # Definition B: anchored at the observed p_true at first learning, lags j >= 1.
            "decay_b": decay([(j, p_true[first + j]) for j in range(1, epochs - first)], True, anchor=p_true[first]),
            "decay_a_floor": decay(lag_retention(correct), True),
            "decay_a_weighted": decay(lag_retention(correct), False, weights=lag_pair_weights(correct)),
            "spearman_brown": [0.4 * 3 / (1 + 2 * 0.4)],
            "events": [events(tr) for tr in traces],
            "cartography": [cartography(p, tr) for p, tr in zip(p_traces, traces)],
            "top_sets": [set_a, set_b],
            "jaccard": jac,
            "per_class_mean": per_class,
            "forgotten_into": into.tolist(),
            "confusion_similarity": conf_sim.tolist(),
            "embedding_similarity": emb_sim.tolist(),
            "similarity_spearman": [float(v) for v in stats.spearmanr(conf_sim[iu], emb_sim[iu])],
            "chance_q10": 0.1 / 1.9,
        },
    }
    path = os.path.join(os.path.dirname(__file__), "..", "dynamics", "tests", "fixtures", "reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {os.path.normpath(path)}")


def jackknife_over_seeds(values):
    """Delete-one-seed jackknife of the mean of pair values tagged with their runs' seeds."""
    seeds = sorted({s for _, tags in values for s in tags})
    g = len(seeds)
    thetas = np.array([np.mean([v for v, tags in values if seed not in tags]) for seed in seeds])
    se = math.sqrt((g - 1) / g * float(np.sum((thetas - thetas.mean()) ** 2)))
    return {"mean": float(np.mean([v for v, _ in values])), "half_width": float(stats.t.ppf(0.975, g - 1) * se), "n": g}


def warmup_predictability(traces, loss, warmup):
    """Spearman(loss, 1/tau) and (loss, tau), tau fitted on the epochs after `warmup`; every
    sample with a defined rate: fitted traces, and unforgettable ones at rate 0."""
    xs, rates = [], []
    for trace, l in zip(traces, loss):
        window = trace[warmup:]
        ev = events(window)
        if ev["first_learned"] is None:
            continue
        points = lag_retention(window)
        ys = [y for _, y in points]
        if len(points) >= 3 and max(ys) != min(ys):
            rate = decay(points, False)["exponential"]["rate"]
            rate = 0.0 if rate < 1e-9 else rate
        elif ev["unforgettable"]:
            rate = 0.0
        else:
            continue
        xs.append(float(l))
        rates.append(rate)
    rates = np.asarray(rates)
    with np.errstate(divide="ignore"):
        taus = np.where(rates > 0, 1.0 / np.where(rates > 0, rates, 1.0), np.inf)
    by_rate, by_tau = stats.spearmanr(xs, rates), stats.spearmanr(xs, taus)
    return {"rate": [float(by_rate.statistic), float(by_rate.pvalue)], "tau": [float(by_tau.statistic), float(by_tau.pvalue)], "n": len(xs)}


def scores_reference():
    """The issue-17 statistics: the jackknife over seeds and warm-up predictability. Their own
    seed and file, so the older reference values above stay exactly as committed."""
    r = np.random.default_rng(20261203)
    runs = [(arch, seed) for arch in range(2) for seed in range(1, 5)]
    pairs = [(i, j) for i in range(len(runs)) for j in range(i + 1, len(runs))]
    within = [(float(r.normal(0.3, 0.1)), [runs[i][1], runs[j][1]]) for i, j in pairs if runs[i][0] == runs[j][0]]
    across = [(float(r.normal(0.1, 0.05)), [runs[i][1], runs[j][1]]) for i, j in pairs if runs[i][0] != runs[j][0]]
    samples, t_len, warmup = 80, 20, 3
    difficulty = r.random(samples)
    traces = [[bool(r.random() < min(0.97, (t + 1) / (t_len * d + 1))) for t in range(t_len)] for d in difficulty]
    traces[0] = [False] * t_len
    traces[1] = [False] * warmup + [True] * (t_len - warmup)
    loss = (difficulty * 2 + r.random(samples)).tolist()
    # Class means of forgetting events, never-learned samples counted as forgotten at every
    # epoch (Toneva et al.'s order_examples_by_forgetting.py) or left out.
    labels = r.integers(0, 5, samples)
    counts = [events(t) for t in traces]
    per_sample_max = np.array([c["forgetting"] if c["first_learned"] is not None else t_len for c in counts], dtype=float)
    learned = np.array([c["first_learned"] is not None for c in counts])
    class_max = [float(per_sample_max[labels == c].mean()) if np.any(labels == c) else None for c in range(5)]
    class_exclude = [float(per_sample_max[(labels == c) & learned].mean()) if np.any((labels == c) & learned) else None for c in range(5)]
    # "Similar classes are forgotten most", per class: Spearman between a class's mean
    # forgetting and its greatest similarity to another class (a symmetric similarity with
    # ones on the diagonal).
    sim = r.random((5, 5))
    sim = (sim + sim.T) / 2
    np.fill_diagonal(sim, 1.0)
    greatest = [float(max(sim[c][j] for j in range(5) if j != c)) for c in range(5)]
    similar = stats.spearmanr(class_max, greatest)
    out = {
        "inputs": {"within": within, "across": across, "traces": traces, "loss": loss, "warmup": warmup, "labels": labels.tolist(), "similarity": sim.tolist()},
        "expected": {
            "jackknife_within": jackknife_over_seeds(within),
            "jackknife_across": jackknife_over_seeds(across),
            "warmup": warmup_predictability(traces, loss, warmup),
            "class_forgetting_max": class_max,
            "class_forgetting_exclude": class_exclude,
            "greatest_similarity": greatest,
            "similar_classes_forgotten_most": [float(similar.statistic), float(similar.pvalue)],
        },
    }
    path = os.path.join(os.path.dirname(__file__), "..", "dynamics", "tests", "fixtures", "reference_scores.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {os.path.normpath(path)}")


# RbF's kernels as functions of x and tau (Amiri et al. 2017, table 1), written out here
# independently of the Rust table of g and h.
KERNELS = {
    "gaussian": lambda x, tau: np.exp(-tau * x**2),
    "laplace": lambda x, tau: np.exp(-tau * x),
    "linear": lambda x, tau: np.maximum(0.0, 1.0 - tau * x),
    "cosine": lambda x, tau: np.where(tau * x <= 1.0, (np.cos(np.pi * tau * x) + 1.0) / 2.0, 0.0),
    "quadratic": lambda x, tau: np.maximum(0.0, 1.0 - tau * x**2),
    "secant": lambda x, tau: 2.0 / (np.exp(-tau * x**2) + np.exp(tau * x**2)),
}
# Each kernel's linearisation: (power of x, inverse of the kernel in tau * x^power).
LINEARISED = {
    "gaussian": (2, lambda p: -np.log(p)),
    "laplace": (1, lambda p: -np.log(p)),
    "linear": (1, lambda p: 1.0 - p),
    "cosine": (1, lambda p: np.arccos(2.0 * p - 1.0) / np.pi),
    "quadratic": (2, lambda p: 1.0 - p),
    "secant": (2, lambda p: np.arccosh(1.0 / p)),
}


def rbf_reference():
    """RbF (issue 22 item 3): tau fitted by least squares (numpy's lstsq) to the validation
    items recalled with confidence >= nu, at delay 1; each training item's delay found by
    scanning t = 1..longest for the last t whose predicted recall stays >= nu."""
    r = np.random.default_rng(20261207)
    strength, nu, longest = 0.83, 0.9, 12
    val_loss = r.gamma(0.6, 0.15, 120)
    confidence = np.exp(-val_loss) * r.uniform(0.97, 1.0, 120)
    train_loss = np.concatenate([r.gamma(0.6, 0.1, 40), [0.0, 5.0]])
    out = {"inputs": {"strength": strength, "nu": nu, "longest": longest, "val_loss": val_loss.tolist(), "confidence": confidence.tolist(), "train_loss": train_loss.tolist()}, "expected": {}}
    for name, kernel in KERNELS.items():
        power, inverse = LINEARISED[name]
        recalled = confidence >= nu
        g = (val_loss[recalled] / strength) ** power
        tau = float(np.linalg.lstsq(g[:, None], inverse(confidence[recalled]), rcond=None)[0][0])
        delays = []
        for d in train_loss:
            t = 1
            while t < longest and kernel(d * (t + 1) / strength, tau) >= nu:
                t += 1
            delays.append(t)
        out["expected"][name] = {"tau": tau, "delays": delays}
    path = os.path.join(os.path.dirname(__file__), "..", "dynamics", "tests", "fixtures", "reference_rbf.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    import sys
    only = sys.argv[1:]
    if only not in (["--scores-only"], ["--rbf-only"]):
        main()
    if only != ["--rbf-only"]:
        scores_reference()
    if only != ["--scores-only"]:
        rbf_reference()

"""``distill3d bench report DIR``: ``report.md`` and its figures, made from ``DIR/results.csv`` alone.

Every number and figure is recomputed from the CSV (``grid.COLUMNS``), so a merged CSV from several machines
reports like one from a single run. Per prior: judged match per method, preset and caption kind (mean with
a 95% bootstrap interval over the (prompt, seed) runs, ``stats.bootstrap``); truth metrics; paired
differences against SDS on the same (prompt, seed); and five figures:

- ``match_by_kind.png``: judged match per kind and method, one panel per preset (default and tuned side by side);
- ``paired_vs_sds.png``: the paired differences against SDS with their intervals;
- ``accuracy_vs_time.png``: judged match against seconds per run;
- ``grad_variance.png``: the variance of the gradient norm over steps (a moving window over each run's
  logged series, averaged over runs), the analogue of ModeDreamer's Fig. 3, beside the same for the norm
  divided by the run's mean norm (UDS's Fig. 9 normalises too): methods differ in the scale of their
  gradients (a CFG of 15 against an adapter scale of 0.3), so only the normalised panel compares how much
  they oscillate;
- ``front_vs_azimuth.png``: faces only: share of runs whose judged view shows the eyes at each azimuth,
  against the truth.

Where a method's tuned setting is its default (the same run ids under both presets), the figures draw it once,
labelled "default = tuned"; each method keeps one colour in every figure, each preset one line or marker style.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from distill3d.bench.grid import RESULTS, parse_series, read_results
from distill3d.bench.stats import Interval, bootstrap, paired
from distill3d.core.io import atomic_path, write_text_atomic
from distill3d.evaluation.toy import AZIMUTHS

KINDS = ("single", "on top of", "next to", "face")
BASELINE = "sds"
WINDOW = 5  # points of the logged gradient-norm series per moving-variance window


def _num(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    v = float(text)
    return None if math.isnan(v) else v


def _order(values, first: tuple[str, ...] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path.name


def _cell(i: Interval | None, pct: bool = False) -> str:
    return "-" if i is None else i.format(pct)


class Table:
    """The CSV's rows with typed access: ``values(metric, **where)``."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def where(self, **eq) -> list[dict]:
        return [r for r in self.rows if all(r.get(k) == v for k, v in eq.items())]

    def values(self, metric: str, **eq) -> list[float]:
        return [v for v in (_num(r.get(metric)) for r in self.where(**eq)) if v is not None]

    def keyed(self, metric: str, **eq) -> dict[tuple, float]:
        out = {}
        for r in self.where(**eq):
            v = _num(r.get(metric))
            if v is not None:
                out[(r["prompt"], r["seed"])] = v
        return out


def _score_metric(t: Table) -> str:
    """"match" (toy priors: judged) or "clip" (others), whichever the rows hold."""
    return "match" if t.values("match") else "clip"


def write_report(out_dir: Path, command: str | None = None) -> Path:
    """report.md and the PNGs in ``out_dir`` from its results.csv."""
    out_dir = Path(out_dir)
    rows = read_results(out_dir)
    lines = [f"# Benchmark report: {out_dir}", "",
             f"Made from `{RESULTS}` alone ({len(rows)} rows)" + (f" by `{command}`" if command else "") + ".",
             ("Intervals: 95% percentile bootstrap over the (prompt, seed) runs; paired differences are taken "
              "per (prompt, seed) first."), ""]
    for prior in _order(r["prior"] for r in rows):
        t = Table([r for r in rows if r["prior"] == prior])
        lines += _prior_section(t, prior, out_dir, multi=len({r["prior"] for r in rows}) > 1)
    path = out_dir / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _prior_section(t: Table, prior: str, out_dir: Path, multi: bool) -> list[str]:
    metric = _score_metric(t)
    presets = _order((r["preset"] for r in t.rows), ("default", "tuned"))
    methods = _order((r["method"] for r in t.rows), (BASELINE,))
    kinds = [k for k in KINDS if t.where(kind=k)] + sorted({r["kind"] for r in t.rows} - set(KINDS) - {""})
    tag = f"_{prior}" if multi else ""
    name = "judged match (share of views)" if metric == "match" else "CLIP similarity"
    pct = metric == "match"
    seeds = sorted({int(r["seed"]) for r in t.rows})
    prompts = sorted({r["prompt"] for r in t.rows})
    lines = [f"## Prior `{prior}`", "", f"{len(prompts)} prompts x seeds {seeds}; presets: {', '.join(presets)}.", ""]
    if {"default", "tuned"} <= set(presets):
        lines += [f"### Main table: {name}, default and tuned settings", "",
                  "| method | default | tuned | tuned − default (paired) | IoU default | IoU tuned |",
                  "|---|---|---|---|---|---|"]
        for m in methods:
            d, u = {"method": m, "preset": "default"}, {"method": m, "preset": "tuned"}
            lines.append(f"| {m} | {_cell(bootstrap(t.values(metric, **d)), pct)} | "
                         f"{_cell(bootstrap(t.values(metric, **u)), pct)} | "
                         f"{_cell(paired(t.keyed(metric, **u), t.keyed(metric, **d)), pct)} | "
                         f"{_cell(bootstrap(t.values('iou', **d)))} | {_cell(bootstrap(t.values('iou', **u)))} |")
        lines.append("")
    per_kind = [(metric, name, pct)]
    if t.values("iou"):  # the judge is generous (a lumpy shape passes); the silhouette against the truth is not
        per_kind.append(("iou", "silhouette IoU against the truth", False))
    for key, title, as_pct in per_kind:
        lines += [f"### {title[0].upper() + title[1:]} per method, preset and kind", "",
                  "| method | preset | all | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
        for m in methods:
            for p in presets:
                if not t.where(method=m, preset=p):
                    continue
                cells = [_cell(bootstrap(t.values(key, method=m, preset=p)), as_pct)]
                cells += [_cell(bootstrap(t.values(key, method=m, preset=p, kind=k)), as_pct) for k in kinds]
                lines.append(f"| {m} | {p} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Against the truth, gradients and cost", "",
              ("| method | preset | silhouette IoU ↑ | colour error ↓ | front-visibility error (faces) ↓ | "
               "Janus views per face run ↓ | grad-norm variance | grad-norm oscillation (normalised) | s/run | "
               "prior evals/run | peak MB |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        for p in presets:
            if not t.where(method=m, preset=p):
                continue
            q = {"method": m, "preset": p}
            face = {**q, "kind": "face"}
            cells = [_cell(bootstrap(t.values("iou", **q))), _cell(bootstrap(t.values("color_error", **q))),
                     _cell(bootstrap(t.values("front_error", **face)), True),
                     _cell(bootstrap(t.values("janus_views", **face))),
                     _cell(bootstrap(t.values("grad_norm_var", **q))),
                     _cell(bootstrap([o for o in map(oscillation, t.where(**q)) if o is not None])),
                     f"{statistics.fmean(t.values('seconds_total', **q)):.0f}",
                     f"{statistics.fmean(t.values('prior_evals', **q)):.0f}",
                     f"{max(t.values('peak_rss_mb', **q), default=0):.0f}"]
            lines.append(f"| {m} | {p} | " + " | ".join(cells) + " |")
    diffs = _paired_rows(t, methods, presets, metric)
    if diffs:
        lines += ["", f"### Paired differences against {BASELINE} (same prompt and seed)", "",
                  f"| method | preset | Δ {metric} | Δ IoU | Δ colour error | pairs |", "|---|---|---|---|---|---|"]
        for m, p, d in diffs:
            lines.append(f"| {m} | {p} | {_cell(d[metric], pct)} | {_cell(d['iou'])} | {_cell(d['color_error'])} | "
                         f"{d[metric].n if d[metric] else 0} |")
    failed = [r for r in t.rows if r.get("note")]
    if failed:
        lines += ["", f"Failed runs (scored as their saved asset, or as an empty one): {len(failed)} of {len(t.rows)}; "
                  + "; ".join(f"{r['method']} ({r['preset']}) {r['prompt']!r} seed {r['seed']}: {r['note'][:80]}"
                              for r in failed[:10])]
    l_rec = [m for m in methods if t.values("l_rec", method=m)]
    def anchor_cell(m: str) -> str:
        keep = bootstrap(t.values("keep_rate", method=m))
        return (f"{m}: L_rec {_cell(bootstrap(t.values('l_rec', method=m)))}"
                + (f", keep-rate {_cell(keep, True)}" if keep else ""))

    lines += ["", "L_rec and filter keep-rate (mean over each run's steps, then over runs): " + (
        "; ".join(anchor_cell(m) for m in l_rec) if l_rec
        else "no run's history logs them (the loop records loss, gradient norm and t)."), ""]
    figs = [_fig_by_kind(t, methods, presets, kinds, metric, out_dir / f"match_by_kind{tag}.png"),
            _fig_paired(_distinct(t, diffs, presets), metric, out_dir / f"paired_vs_sds{tag}.png"),
            _fig_time(t, methods, presets, metric, out_dir / f"accuracy_vs_time{tag}.png"),
            _fig_grad(t, methods, presets, out_dir / f"grad_variance{tag}.png"),
            _fig_front(t, methods, presets, out_dir / f"front_vs_azimuth{tag}.png")]
    lines += [f"![{f}]({f})" for f in figs if f]
    return lines + [""]


def _paired_rows(t: Table, methods: list[str], presets: list[str], metric: str):
    out = []
    for p in presets:
        if not t.where(method=BASELINE, preset=p):
            continue
        for m in methods:
            if m == BASELINE or not t.where(method=m, preset=p):
                continue
            d = {k: paired(t.keyed(k, method=m, preset=p), t.keyed(k, method=BASELINE, preset=p))
                 for k in (metric, "iou", "color_error")}
            if d[metric] is not None:
                out.append((m, p, d))
    return out


def _errorbar(ax, x, intervals: list[Interval | None], **kw) -> None:
    xs = [xi for xi, i in zip(x, intervals) if i is not None]
    iv = [i for i in intervals if i is not None]
    if iv:
        ax.errorbar(xs, [i.mean for i in iv], yerr=[[i.mean - i.low for i in iv], [i.high - i.mean for i in iv]],
                    **kw)


def _preset_groups(t: Table, presets: list[str], methods: tuple[str, ...]) -> list[list[str]]:
    """``presets`` grouped where each of ``methods`` has exactly the same runs under every preset of a group (a
    tuned setting equal to the defaults); presets under which ``methods[0]`` has no runs are left out."""
    groups: list[tuple[tuple[frozenset, ...], list[str]]] = []
    for p in presets:
        key = tuple(frozenset(r["run_id"] for r in t.where(method=m, preset=p)) for m in methods)
        if not key[0]:
            continue
        group = next((g for k, g in groups if k == key), None)
        if group is None:
            groups.append((key, [p]))
        else:
            group.append(p)
    return [g for _, g in groups]


def _label(m: str, group: list[str]) -> str:
    return f"{m} ({' = '.join(group)})"


def _drawn(t: Table, m: str, presets: list[str]) -> list[tuple[str, str]]:
    """(preset, label) pairs to draw for method ``m``: a preset whose runs are exactly another's is drawn once."""
    return [(g[0], _label(m, g)) for g in _preset_groups(t, presets, (m,))]


def _style(presets: list[str], p: str, kind: str) -> str:
    return {"line": ("-", "--", ":", "-."), "marker": "os^dv"}[kind][presets.index(p) % 4]


def _fig_by_kind(t, methods, presets, kinds, metric, path) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(presets), figsize=(5 * len(presets), 3.6), squeeze=False, sharey=True)
    groups = ["all", *kinds]
    width = 0.8 / max(1, len(methods))
    for ax, p in zip(axes[0], presets):
        for j, m in enumerate(methods):
            ivs = [bootstrap(t.values(metric, method=m, preset=p, **({} if g == "all" else {"kind": g})))
                   for g in groups]
            x = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(groups))]
            ax.bar([xi for xi, iv in zip(x, ivs) if iv], [iv.mean for iv in ivs if iv], width, label=m,
                   color=f"C{j % 10}")  # one colour per method in every panel, whatever a panel lacks
            _errorbar(ax, x, ivs, fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_title(f"preset: {p}")
        ax.set_ylabel(metric)
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)


def _distinct(t: Table, diffs, presets: list[str]):
    """``diffs`` as (label, difference), less those that repeat another preset's: the same runs of the method
    and of the baseline; the kept one is labelled with every preset it stands for ("default = tuned")."""
    labels = {(m, g[0]): _label(m, g) for m in {m for m, _, _ in diffs}
              for g in _preset_groups(t, presets, (m, BASELINE))}
    return [(labels[(m, p)], d) for m, p, d in diffs if (m, p) in labels]


def _fig_paired(diffs, metric, path) -> str | None:
    if not diffs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(diffs) + 1.2))
    labels = [label for label, _ in diffs]
    ivs = [d[metric] for _, d in diffs]
    ax.errorbar([i.mean for i in ivs], range(len(ivs)), xerr=[[i.mean - i.low for i in ivs],
                                                             [i.high - i.mean for i in ivs]], fmt="o", capsize=3)
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_yticks(range(len(ivs)), labels)
    ax.set_xlabel(f"Δ {metric} against {BASELINE} (same prompt, seed)")
    return _save(fig, path)


def _fig_time(t, methods, presets, metric, path) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for j, m in enumerate(methods):
        for p, label in _drawn(t, m, presets):
            q = {"method": m, "preset": p}
            secs, acc = t.values("seconds_total", **q), bootstrap(t.values(metric, **q))
            if secs and acc:
                ax.errorbar([statistics.fmean(secs)], [acc.mean], yerr=[[acc.mean - acc.low], [acc.high - acc.mean]],
                            fmt=_style(presets, p, "marker"), capsize=3, label=label, color=f"C{j % 10}")
    ax.set_xlabel("seconds per run (optimisation, exports, judge)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return _save(fig, path)


def moving_variance(values: list[float], window: int = WINDOW) -> list[float]:
    """Population variance of each run of ``window`` consecutive values (len(values) - window + 1 of them)."""
    return [statistics.pvariance(values[i:i + window]) for i in range(len(values) - window + 1)]


def _series_values(row: dict) -> tuple[list[int], list[float]]:
    series = parse_series(row.get("grad_norm_series", ""))
    return [s for s, _ in series], [v for _, v in series]


def _normalised(values: list[float]) -> list[float]:
    """``values`` divided by their mean; empty when the mean is not positive (no scale to divide by)."""
    mean = statistics.fmean(values) if values else 0.0
    return [v / mean for v in values] if mean > 0 else []


def oscillation(row: dict) -> float | None:
    """Mean moving variance (``WINDOW`` logged points) of a run's gradient norm divided by its mean norm: how
    much the gradient oscillates, free of its scale (None for a series shorter than a window or all zero)."""
    values = _normalised(_series_values(row)[1])
    return statistics.fmean(moving_variance(values)) if len(values) >= WINDOW else None


def _fig_grad(t, methods, presets, path) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for j, m in enumerate(methods):
        for p, label in _drawn(t, m, presets):
            per_step: list[dict[int, list[float]]] = [defaultdict(list), defaultdict(list)]
            for r in t.where(method=m, preset=p):
                steps, values = _series_values(r)
                for k, vals in enumerate((values, _normalised(values))):
                    for s, v in zip(steps[WINDOW - 1:], moving_variance(vals)):
                        per_step[k][s].append(v)
            for ax, d in zip(axes, per_step):
                if d:
                    xs = sorted(d)
                    ax.plot(xs, [statistics.fmean(d[s]) for s in xs], _style(presets, p, "line"), label=label,
                            color=f"C{j % 10}")
    axes[0].set_ylabel(f"variance of |g| over {WINDOW} logged steps")
    axes[1].set_ylabel(f"variance of |g| / mean |g| of the run, over {WINDOW} logged steps")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("step")
    axes[0].set_title("raw (scale differs by method)", fontsize=9)
    axes[1].set_title("normalised by each run's mean norm", fontsize=9)
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def _fig_front(t, methods, presets, path) -> str | None:
    faces = [r for r in t.rows if r.get("front_seen")]
    if not faces:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    truth = [statistics.fmean(int(r["front_truth"][i]) for r in faces) for i in range(len(AZIMUTHS))]
    ax.plot(AZIMUTHS, truth, "k--", lw=2, label="truth")
    for j, m in enumerate(methods):
        for p, label in _drawn(t, m, presets):
            mine = [r for r in faces if r["method"] == m and r["preset"] == p]
            if mine:
                ax.plot(AZIMUTHS, [statistics.fmean(int(r["front_seen"][i]) for r in mine)
                                   for i in range(len(AZIMUTHS))], _style(presets, p, "marker") +
                        _style(presets, p, "line"), label=label, color=f"C{j % 10}", alpha=0.8)
    ax.set_xticks(AZIMUTHS)
    ax.set_xlabel("azimuth (°; 0 = the face's front)")
    ax.set_ylabel("share of runs: eyes judged visible")
    ax.legend(fontsize=7)
    return _save(fig, path)


__all__ = ["moving_variance", "oscillation", "write_report"]

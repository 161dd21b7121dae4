"""Output of a neuraxis profile: its figure and its CSV files.

:func:`plot_profile` draws the heat map (distance x time) and the overlaid
profiles with the leading edge; :func:`write_profile` writes
``neuraxis_profile.csv``, ``neuraxis_front.csv``, ``neuraxis_spread.csv`` and
the figure into a results folder. Re-exported by
:mod:`spectrack.regions.neuraxis`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .spread import spread_measures, tracer_front

__all__ = ["plot_profile", "write_profile", "PROFILE_AXIS_LABELS"]


#: Axis labels of the profile columns a figure may draw (this module's figure and the report's).
PROFILE_AXIS_LABELS = {"pct_id_per_cm": "%ID per cm of canal, decay-corrected",
                       "pct_id_per_cm_uncorrected": "%ID per cm of canal, not decay-corrected",
                       "pct_id_per_ml": "%ID per mL of canal, decay-corrected",
                       "mbq": "MBq per slab at scan start", "pct_id": "%ID per slab, decay-corrected"}


def plot_profile(profile, path, *, spread=None, value: str = "pct_id_per_cm"):
    """Save a figure of the profile: heat map (distance x time) and overlaid profiles with the leading edge.

    Parameters
    ----------
    profile : pandas.DataFrame
        From :func:`profile_study`.
    path : path-like
        PNG file to write (atomically).
    spread : pandas.DataFrame, optional
        :func:`spread_measures` of ``profile`` (computed when omitted).
    value : str
        Profile column to draw.

    Notes
    -----
    The marks are the leading edge of :func:`spread_measures` (10 % of the
    canal's activity lies rostral of it), not the half-maximum front of
    :func:`tracer_front`, which jumps when a second peak appears.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: rendered by Agg, no global backend state

    from ...io_utils import atomic_path
    from ...report.figures import figure_png, _without_attrs

    if spread is None:
        spread = spread_measures(profile)
    edge = spread.set_index("timepoint")["leading_edge_mm"]
    tps = sorted(profile["timepoint"].unique())
    # each time point's rows once, sorted along the canal; without the profile's attrs, which pandas would
    # deep-copy into every selection
    plain = _without_attrs(profile)[["timepoint", "time_h", "distance_mm", value]]
    rows = {t: g for t, g in plain.groupby("timepoint", sort=False)}
    along = {t: rows[t].sort_values("distance_mm") for t in tps}
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax0, ax1 = fig.subplots(1, 2)
    times = [float(rows[t]["time_h"].iloc[0]) for t in tps]
    # heat map: rows = time points (ordered), columns = distance
    dmin, dmax = float(profile["distance_mm"].min()), float(profile["distance_mm"].max())
    grid_d = np.linspace(dmin, dmax, 200)
    z = np.array([np.interp(grid_d, *along[t][["distance_mm", value]].to_numpy().T) for t in tps])
    im = ax0.imshow(z, aspect="auto", origin="lower", extent=(dmin, dmax, -0.5, len(tps) - 0.5),
                    cmap="viridis", interpolation="nearest")
    ax0.set_yticks(range(len(tps)), [f"{t:.2f} h" for t in times])
    ax0.set_xlabel("distance from injection level along the canal (mm, rostral +)")
    ax0.set_ylabel("scan")
    label = PROFILE_AXIS_LABELS.get(value, value.replace("_", " "))
    fig.colorbar(im, ax=ax0, label=label)
    for n, t in enumerate(tps):
        if t in edge.index and np.isfinite(edge.loc[t]):
            ax0.plot([edge.loc[t]] * 2, [n - 0.45, n + 0.45], color="w", lw=2)
    cmap = matplotlib.colormaps["plasma"]
    for n, t in enumerate(tps):
        g = along[t]
        c = cmap(n / max(1, len(tps) - 1) * 0.85)
        ax1.plot(g["distance_mm"], g[value], color=c, label=f"{times[n]:.2f} h")
        if t in edge.index and np.isfinite(edge.loc[t]):
            ax1.axvline(edge.loc[t], color=c, ls="--", lw=1)
    ax1.axvline(0.0, color="k", lw=0.8)
    ax1.set_xlabel("distance from injection level (mm, rostral +)")
    ax1.set_ylabel(label)
    ax1.set_title("neuraxis profile\ndashed: leading edge (10 % of the canal's activity rostral of it)",
                  fontsize=9)
    ax1.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = figure_png(fig, dpi=110)  # laid out once (savefig would draw every artist twice)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png)
    return path


def write_profile(profile, out_dir, *, fraction: float = 0.5, reference: str = "peak", value: str = "pct_id_per_ml",
                  plot: bool = True) -> dict:
    """Write ``neuraxis_profile.csv``, ``neuraxis_spread.csv`` (:func:`spread_measures`), ``neuraxis_front.csv``
    (the half-maximum front) and ``neuraxis_profile.png`` into ``out_dir``.

    ``fraction``, ``reference`` and ``value`` are passed to :func:`tracer_front`.

    Returns
    -------
    dict
        File name -> path of what was written.
    """
    from ...io_utils import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    front = tracer_front(profile, fraction=fraction, reference=reference, value=value)
    spread = spread_measures(profile)
    written = {}
    for name, df in (("neuraxis_profile.csv", profile), ("neuraxis_front.csv", front),
                     ("neuraxis_spread.csv", spread)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.9g")
        written[name] = out / name
    if plot:
        written["neuraxis_profile.png"] = plot_profile(profile, out / "neuraxis_profile.png", spread=spread)
    return written

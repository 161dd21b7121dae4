"""Exponential models fitted to time-activity curves, and model choice by AICc.

The parts: the models (formulas, parameters, functions; :mod:`spectrack.kinetics.models`), the
starting values (:mod:`spectrack.kinetics.starting_values`), one model fitted to one curve
(:func:`fit_tac`, :class:`FitResult`; :mod:`spectrack.kinetics.least_squares`), all importable
from here; this module fits several models and chooses among them (:func:`fit_models`).

Model choice (:func:`fit_models`)
---------------------------------
Only fits that converged, whose AICc is defined (``n > K + 1``: with six
scans the four-parameter bi-exponential is not a candidate) and whose
``R^2 >= 0.9`` are compared; among them the model with the fewest
parameters within ``delta-AICc <= 2`` of the lowest AICc is chosen (the
simpler model is preferred when the data cannot tell them apart; Burnham &
Anderson 2002). When no fit qualifies, no model is chosen: a curve is then
neither drawn with a fitted line nor integrated or extrapolated by a model.

:meth:`FitResult.quality_issues` says whether a fit may be extrapolated
(converged, no parameter on a bound, ``R^2 >= 0.9``, at least 3 points after
the peak in the fit's terminal phase); :mod:`spectrack.kinetics.auc` uses its
terminal rate only then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .least_squares import FAST_SHARE, MIN_TERMINAL_POINTS  # noqa: F401 - public, importable from here
from .least_squares import MIN_R_SQUARED, FitResult, fit_tac, fits_to_frame
from .models import DEFAULT_MODELS, MODELS, model_function

#: models within this AICc of the lowest count as equally supported; the simplest of them is chosen
DELTA_AICC = 2.0

__all__ = [
    "MODELS",
    "DEFAULT_MODELS",
    "DELTA_AICC",
    "FitResult",
    "ModelSelection",
    "fit_tac",
    "fit_models",
    "fits_to_frame",
    "model_function",
]


# ------------------------------------------------------------ model choice
@dataclass
class ModelSelection:
    """Several models fitted to one curve, and the one chosen.

    ``criterion`` is ``"AICc"``; ``compared`` the fits that competed
    (converged, AICc defined, ``R^2 >= min_r_squared``); ``best`` is None
    when none did; ``reason`` says why the choice fell as it did and why any
    model was left out.
    """

    fits: list[FitResult]
    best: FitResult | None
    criterion: str
    reason: str
    compared: list[FitResult] = field(default_factory=list)

    def to_frame(self):
        """One row per candidate, with ``compared``, ``delta`` (AICc minus the lowest compared),
        Akaike ``weight`` (over the compared fits), ``selected`` and ``selection_reason``."""
        import pandas as pd

        ids = {id(f) for f in self.compared}
        vals = [f.aicc for f in self.compared]
        vmin = min(vals) if vals else math.nan
        wsum = sum(math.exp(-0.5 * (v - vmin)) for v in vals) if vals else math.nan
        rows = []
        for f in self.fits:
            d = f.to_dict()
            ok = id(f) in ids
            d.update(criterion=self.criterion, compared=ok, delta=f.aicc - vmin if ok else math.nan,
                     weight=math.exp(-0.5 * (f.aicc - vmin)) / wsum if ok else 0.0,
                     selected=f is self.best, selection_reason=self.reason)
            rows.append(d)
        return pd.DataFrame(rows)


def _usable(f: FitResult) -> bool:
    return f.converged and f.dof > 0


def fit_models(time_h, values, models: Sequence[str] = DEFAULT_MODELS, *, min_r_squared: float = MIN_R_SQUARED,
               delta_aicc: float = DELTA_AICC, **kwargs) -> ModelSelection:
    """Fit several models and choose the simplest one the data support, by AICc.

    A fit competes only when it converged, its AICc is defined (``n > K +
    1`` with ``K`` = parameters + 1; AIC is never used in its place) and its
    ``R^2 >= min_r_squared``. Among the competitors, those within
    ``delta_aicc`` of the lowest AICc are equally supported, and the one with
    the fewest parameters is chosen (ties: lower AICc). No model is chosen
    when none competes.

    Parameters
    ----------
    time_h, values : array_like
    models : sequence of str
        Candidates (default :data:`DEFAULT_MODELS`).
    min_r_squared : float
        Fits below this unweighted R^2 are never chosen.
    delta_aicc : float
        Support margin (2, Burnham & Anderson 2002).
    **kwargs
        Passed to :func:`fit_tac`.

    Examples
    --------
    >>> t = np.array([0.5, 1, 2, 4, 6, 24.0])
    >>> sel = fit_models(t, 10 * np.exp(-0.3 * t) * (1 + 0.01 * np.cos(t)), weighting="relative")
    >>> sel.best.model, [f.model for f in sel.compared]
    ('mono', ['mono', 'uptake_washout', 'transit'])
    """
    refined: dict = {}  # refinements one model's fit shares with another's (same start, bounds and data)
    fits = [fit_tac(time_h, values, name, _refined=refined, **kwargs) for name in models]
    compared, left_out = [], []
    for f in fits:
        if not f.converged:
            left_out.append(f"{f.model}: not converged")
        elif not np.isfinite(f.aicc):
            left_out.append(f"{f.model}: AICc undefined (n={f.n} <= K+1={f.n_params + 2})")
        elif not f.r_squared >= min_r_squared:
            left_out.append(f"{f.model}: R^2 = {f.r_squared:.3g} < {min_r_squared:g}")
        else:
            compared.append(f)
    out_txt = ("; not compared: " + "; ".join(left_out)) if left_out else ""
    if not compared:
        return ModelSelection(fits, None, "AICc", "no model chosen" + (out_txt or ": no candidate"), [])
    low = min(compared, key=lambda f: f.aicc)
    near = [f for f in compared if f.aicc - low.aicc <= delta_aicc]
    best = min(near, key=lambda f: (f.n_params, f.aicc))
    if best is low:
        reason = "lowest AICc"
    else:
        reason = (f"simplest model within delta-AICc {delta_aicc:g} of the lowest ({low.model}, "
                  f"delta {best.aicc - low.aicc:.2f})")
    return ModelSelection(fits, best, "AICc", reason + out_txt, compared)

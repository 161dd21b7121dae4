"""A linear compartment model of intrathecal tracer kinetics for the phantom.

The model follows the qualitative picture of ``REFERENCE.md`` section 1: a
bolus into the lumbar canal (part of it stays at the needle site), flow of
CSF-borne tracer rostrally along the canal into the brain, clearance from the
CSF to blood (the ``remainder`` compartment), uptake from blood by liver and
kidneys, renal excretion into the bladder, voiding of the bladder at given
times, a little free pertechnetate taken up by thyroid, stomach and salivary
glands, and drainage of CSF-borne tracer to lymph nodes.

All amounts are fractions of the injected dose, **decay-corrected** (physical
decay is applied only when images are made). The rate constants in
:mod:`spectrack.phantom.presets` are illustrative: they were chosen to give
the published qualitative shapes (brain rising then falling in rats and NHPs,
still rising at 4 h in humans, NHP brain peak within 4-10 %ID) and are not
fitted to any data.

The solution is exact: ``A(t) = expm(K t) A(0)`` between voiding events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["COMPARTMENTS", "COMPARTMENTS_INTRACRANIAL_CSF", "KineticsModel", "simulate_pct_id",
           "time_integrated_pct_id"]

#: Model compartments: the region names of the vocabulary plus ``excreted``
#: (urine voided from the bladder, out of the body).
COMPARTMENTS: tuple[str, ...] = (
    "injection_site",
    "canal_sacral",
    "canal_lumbar",
    "canal_thoracic",
    "canal_cervical",
    "brain",
    "remainder",
    "liver",
    "kidneys",
    "bladder",
    "thyroid",
    "stomach",
    "salivary_glands",
    "lymph_nodes",
    "skull",
    "vertebrae",
    "excreted",
)

#: Compartments of the opt-in model with intracranial CSF (``make_phantom(..., intracranial_csf=True)``):
#: :data:`COMPARTMENTS` with ``csf_intracranial`` after ``brain``.
COMPARTMENTS_INTRACRANIAL_CSF: tuple[str, ...] = (
    COMPARTMENTS[:COMPARTMENTS.index("brain") + 1] + ("csf_intracranial",)
    + COMPARTMENTS[COMPARTMENTS.index("brain") + 1:])


@dataclass(frozen=True)
class KineticsModel:
    """First-order transfer rates between compartments, plus bladder voids.

    Parameters
    ----------
    rates_per_h : dict of (str, str) to float
        ``{(from, to): k}`` in 1/h.
    initial : dict of str to float
        Fraction of the injected dose in each compartment at injection
        (must sum to 1).
    voids_h : tuple of float
        Times (h after injection) at which the bladder is emptied.
    void_fraction : float
        Fraction of the bladder content leaving the body at each void.
    compartments : tuple of str
        Compartment names in matrix order (:data:`COMPARTMENTS`, or
        :data:`COMPARTMENTS_INTRACRANIAL_CSF`); must include ``bladder`` and
        ``excreted``.
    """

    rates_per_h: dict = field(default_factory=dict)
    initial: dict = field(default_factory=dict)
    voids_h: tuple = ()
    void_fraction: float = 0.9
    compartments: tuple = COMPARTMENTS

    def matrix(self) -> np.ndarray:
        """Rate matrix ``K`` (1/h) with ``dA/dt = K A``; columns sum to zero."""
        idx = {c: n for n, c in enumerate(self.compartments)}
        k = np.zeros((len(self.compartments), len(self.compartments)))
        for (src, dst), rate in self.rates_per_h.items():
            if src not in idx or dst not in idx:
                raise ValueError(f"unknown compartment in rate {(src, dst)}")
            if rate < 0:
                raise ValueError(f"rate {(src, dst)} must be >= 0, got {rate}")
            k[idx[dst], idx[src]] += rate
            k[idx[src], idx[src]] -= rate
        return k

    def initial_vector(self) -> np.ndarray:
        a0 = np.zeros(len(self.compartments))
        for c, v in self.initial.items():
            a0[self.compartments.index(c)] = v
        if abs(a0.sum() - 1.0) > 1e-12:
            raise ValueError(f"initial fractions must sum to 1, got {a0.sum()}")
        return a0

    def fractions(self, times_h) -> np.ndarray:
        """Fractions of the injected dose (decay-corrected), shape ``(len(times), n_compartments)``."""
        from scipy.linalg import expm

        times = np.asarray(times_h, dtype=float).reshape(-1)
        if np.any(times < 0):
            raise ValueError("times must be >= 0 h after injection")
        k = self.matrix()
        ib, ie = self.compartments.index("bladder"), self.compartments.index("excreted")
        events = sorted(v for v in self.voids_h if v > 0)
        out = np.zeros((times.size, len(self.compartments)))
        for n, t in enumerate(times):
            a = self.initial_vector()
            t_prev = 0.0
            for tv in events:
                if tv > t:
                    break
                a = expm(k * (tv - t_prev)) @ a
                moved = a[ib] * self.void_fraction
                a[ib] -= moved
                a[ie] += moved
                t_prev = tv
            out[n] = expm(k * (t - t_prev)) @ a
        return out


def voided_pct_id(model: KineticsModel) -> list[tuple[float, float]]:
    """What leaves the body at each bladder void: ``(time_h, %ID decay-corrected)``, in time order.

    Examples
    --------
    >>> m = KineticsModel({("remainder", "bladder"): 1e9}, {"remainder": 1.0}, voids_h=(2.0,), void_fraction=0.9)
    >>> [(t, round(p, 6)) for t, p in voided_pct_id(m)]
    [(2.0, 90.0)]
    """
    ie = model.compartments.index("excreted")
    out, before = [], 0.0
    for tv in sorted(v for v in model.voids_h if v > 0):
        after = 100.0 * float(model.fractions([tv])[0, ie])
        out.append((float(tv), after - before))
        before = after
    return out


def simulate_pct_id(model: KineticsModel, times_h) -> dict[str, np.ndarray]:
    """Decay-corrected %ID of every compartment at ``times_h``.

    Examples
    --------
    >>> m = KineticsModel({("canal_lumbar", "remainder"): 1.0}, {"canal_lumbar": 1.0})
    >>> p = simulate_pct_id(m, [0.0, 1.0])
    >>> [round(float(v), 4) for v in p["canal_lumbar"]]
    [100.0, 36.7879]
    """
    f = model.fractions(times_h)
    return {c: 100.0 * f[:, n] for n, c in enumerate(model.compartments)}


def time_integrated_pct_id(model: KineticsModel, half_life_h: float) -> dict[str, float]:
    """Exact integral from injection to infinity of every compartment's physical %ID, in %ID h.

    The physical curve is the decay-corrected model times ``exp(-lambda
    t)``; its integral is the time-integrated activity over the injected
    activity (x 100). Solved in closed form between bladder voids:
    ``int_0^T expm(M t) dt a = M^-1 (expm(M T) - I) a`` with ``M = K -
    lambda I``, and ``-M^-1 a`` after the last void.

    Examples
    --------
    >>> m = KineticsModel({("canal_lumbar", "remainder"): 0.5}, {"canal_lumbar": 1.0})
    >>> round(time_integrated_pct_id(m, half_life_h=math.log(2) / 0.5)["canal_lumbar"], 9)
    100.0
    """
    from scipy.linalg import expm

    lam = math.log(2) / float(half_life_h)
    nc = len(model.compartments)
    m = model.matrix() - lam * np.eye(nc)
    a = model.initial_vector()
    ib, ie = model.compartments.index("bladder"), model.compartments.index("excreted")
    total = np.zeros(nc)
    t_prev = 0.0
    for tv in sorted(v for v in model.voids_h if v > 0):
        e = expm(m * (tv - t_prev))
        total += np.linalg.solve(m, (e - np.eye(nc)) @ a)
        a = e @ a
        moved = a[ib] * model.void_fraction
        a[ib] -= moved
        a[ie] += moved
        t_prev = tv
    total -= np.linalg.solve(m, a)
    return {c: 100.0 * float(v) for c, v in zip(model.compartments, total)}

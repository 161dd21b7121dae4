"""Memory of the Monte Carlo draws: estimates of their arrays and the check that refuses too many.

:func:`pct_id_draws_bytes` estimates the %ID draws of
:func:`spectrack.quantification.intervals.add_pct_id_intervals`,
:func:`kinetics_draws_bytes` the refits of one curve's draws
(:func:`spectrack.kinetics.uncertainty.metric_intervals`);
:func:`check_draw_memory` refuses, in one line, draws that would take more than
:data:`DRAW_MEMORY_SHARE` of :func:`available_memory_bytes`.
"""

from __future__ import annotations

__all__ = ["DRAW_MEMORY_SHARE", "available_memory_bytes", "pct_id_draws_bytes", "kinetics_draws_bytes",
           "check_draw_memory"]


#: Share of the available memory the Monte Carlo draw arrays may take before they are refused.
DRAW_MEMORY_SHARE = 0.5


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation, in bytes (None when the system does not say).

    ``MemAvailable`` of ``/proc/meminfo`` (Linux: free memory plus what the
    page cache can give back), else ``os.sysconf("SC_AVPHYS_PAGES")``, else
    the physical memory ``os.sysconf("SC_PHYS_PAGES")``, times the page size.
    """
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            pages, size = os.sysconf(name), os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    return None


def pct_id_draws_bytes(n_draws: int, n_rows: int, max_labels: int, *, pvc: bool = False,
                       return_draws: bool = False) -> int:
    """Peak bytes of the draw arrays of :func:`~spectrack.quantification.intervals.add_pct_id_intervals` (float64).

    Held throughout: the draws of every table row (``n_draws x n_rows``; twice
    with recovery correction); at the end the percentiles copy them (two
    more) and ``return_draws`` copies them per curve (two more, three with
    recovery correction). Per time point: the counting-noise draws of the
    labels and the outside (``n_draws x (max_labels + 1)``: the gamma draws
    and their masked copy), the boundary shifts, factors and perturbed sums,
    and the temporaries of the boundary factor (nine such arrays; four more
    with recovery correction: its boundary factor and the solved contents).

    Parameters
    ----------
    n_draws, n_rows : int
        Monte Carlo draws; rows of the table (time points x regions, groups,
        field of view and outside).
    max_labels : int
        Most labels quantified at one time point.
    pvc, return_draws : bool
        As for :func:`~spectrack.quantification.intervals.add_pct_id_intervals` (``pvc``: recovery-corrected
        intervals too).

    Returns
    -------
    int
        Bytes.

    Examples
    --------
    >>> pct_id_draws_bytes(1000, 10, 2)
    456000
    """
    per_draw = n_rows * ((2 if pvc else 1) + 2 + ((3 if pvc else 2) if return_draws else 0))
    per_draw += (int(max_labels) + 1) * (13 if pvc else 9)
    return 8 * int(n_draws) * per_draw


def kinetics_draws_bytes(n_draws: int, n_times: int, n_metrics: int) -> int:
    """Peak bytes of refitting one curve's draws (:func:`~spectrack.kinetics.uncertainty.metric_intervals` through ``_curve_intervals``).

    The draws of the curve with the scans held (``n_draws x n_times``) and
    their slice, the value of every metric in every draw
    (``n_draws x n_metrics``) and the percentiles' copies of them (float64).

    Examples
    --------
    >>> kinetics_draws_bytes(100, 6, 20)
    41600
    """
    return 8 * int(n_draws) * (2 * int(n_times) + 2 * int(n_metrics))


def check_draw_memory(need_bytes: int, what: str, n_draws: int, fix: str, *, available: int | None = None) -> None:
    """Refuse Monte Carlo draws whose arrays would take more than a safe share of the available memory.

    Parameters
    ----------
    need_bytes : int
        The estimate (:func:`pct_id_draws_bytes`, :func:`kinetics_draws_bytes`).
    what : str
        What the draws are for, for the message.
    n_draws : int
        The draws asked for (the message gives the most that fit).
    fix : str
        The option that sets the draws (``--uncertainty-draws``).
    available : int, optional
        Available bytes; default :func:`available_memory_bytes`. Unknown
        available memory lets the draws run.

    Raises
    ------
    InputError
        One line: the estimate, the available memory, and how many draws fit.
    """
    from ..errors import InputError

    avail = available_memory_bytes() if available is None else available
    if avail is None or need_bytes <= DRAW_MEMORY_SHARE * avail:
        return
    fit = int(n_draws * DRAW_MEMORY_SHARE * avail // max(need_bytes, 1))
    raise InputError(f"{what}: {n_draws} Monte Carlo draws need about {_gib(need_bytes)} of memory, more than "
                     f"{100 * DRAW_MEMORY_SHARE:g} % of the {_gib(avail)} available: give fewer draws ({fix} "
                     f"{max(fit, 0)} or less), or free memory")


def _gib(n: float) -> str:
    """Bytes as text: ``1.5 GiB``, ``12 MiB``."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"

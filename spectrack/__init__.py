"""spectrack: percent injected dose per region over time from SPECT/CT series.

Data flow (one sub-package per step)::

    load -> align -> regions -> quantification -> kinetics -> report

The public API is re-exported here lazily so ``import spectrack`` stays fast.
"""

from ._version import __version__

__all__ = ["__version__", "load_study", "quantify", "run_study"]


def __getattr__(name):  # lazy re-exports (PEP 562)
    if name == "load_study":
        from .load import load_study

        return load_study
    if name == "quantify":
        from .quantification import quantify

        return quantify
    if name == "run_study":
        from .pipeline import run_study

        return run_study
    raise AttributeError(f"module 'spectrack' has no attribute {name!r}")

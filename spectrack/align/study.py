"""The align stage of a study run: every time point registered onto the reference, in a thread.

:func:`register_study` starts :func:`spectrack.align.register.register_timepoints` in a thread of its own
(SimpleITK releases the GIL, so it overlaps with segmenting the regions) and returns a
:class:`PendingRegistration`; its :meth:`~PendingRegistration.result` waits for it and gives an
:class:`Alignment`: the transforms, their inverses for carrying the labels, and the ``study.json`` record.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Alignment", "PendingRegistration", "register_study"]


@dataclass
class Alignment:
    """The registration of a study's time points onto its reference time point (all None without one)."""

    #: the transforms from the reference to each time point
    #: (:class:`~spectrack.align.register.TimepointTransforms`), written to ``transforms/``
    results: object | None = None
    #: their inverses, which carry the labels onto each time point's emission grid
    transforms: list | None = None
    #: ``study.json`` ``registration``: mode, reference, working spacing and per time point its quality
    record: dict | None = None


class PendingRegistration:
    """A registration running in a thread (or none to run); :meth:`result` waits for it."""

    def __init__(self, study=None, future=None, *, mode: str | None = None, reference: int | None = None):
        self._study, self._future, self._mode, self._reference = study, future, mode, reference

    def result(self) -> Alignment:
        """The :class:`Alignment` (empty when nothing was registered); the registration's warnings go into the
        study's, and its errors are raised here."""
        if self._future is None:
            return Alignment()
        mode, reference = self._mode, self._reference
        reg = self._future.result()
        self._study.warnings.extend(reg.warnings)
        # registration maps reference points to each time point; labels are resampled with the inverse
        transforms = [t.GetInverse() for t in reg]
        registration = {"mode": mode, "reference": reference,
                        "ct_working_spacing_mm": reg.working_spacing_mm,
                        "timepoints": [{"index": i, "quality_ncc": r.quality_ncc,
                                        "translation_mm": list(r.translation_mm), "rotation_deg": list(r.rotation_deg),
                                        "metric_value": r.metric_value, "iterations": r.iterations,
                                        "elapsed_s": r.elapsed_s, "stop_condition": r.stop_condition}
                                       for i, r in enumerate(reg.results)]}
        return Alignment(results=reg, transforms=transforms, record=registration)


def register_study(study, settings, *, reference: int) -> PendingRegistration:
    """Start registering every time point of a study onto ``reference``.

    Parameters
    ----------
    study : Study
        The loaded study: CT to CT when every time point has a CT, SPECT to SPECT otherwise.
    settings : Settings
        ``settings.register``: False registers nothing.
    reference : int
        The reference time point (:attr:`spectrack.regions.resolve.StudyRegions.reference`: the one the regions
        were drawn on).

    Returns
    -------
    PendingRegistration
        Running in a thread when ``settings.register`` and the study has more than one time point; nothing to
        wait for otherwise.
    """
    if not (settings.register and len(study.timepoints) > 1):
        return PendingRegistration()
    from concurrent.futures import ThreadPoolExecutor

    from .register import register_timepoints

    mode = "ct" if all(tp.ct is not None for tp in study.timepoints) else "spect"
    executor = ThreadPoolExecutor(1, thread_name_prefix="spectrack-register")
    future = executor.submit(register_timepoints, study.timepoints, reference_index=reference, mode=mode)
    executor.shutdown(wait=False)
    return PendingRegistration(study, future, mode=mode, reference=reference)

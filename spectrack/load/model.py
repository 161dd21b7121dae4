"""What the loaders return: series with sourced metadata, time points, studies.

Every metadata value is a :class:`Sourced`: the value and where it came from
(a DICOM tag with its keyword, a sidecar key, a command-line option or a
default). Missing values are absent from ``Series.meta`` (``Series.get``
returns ``None``); only the steps that need a value raise.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..geometry import Image

__all__ = ["Sourced", "Series", "TimePoint", "Study", "META_KEYS"]

#: Metadata keys a loader may fill, with their meaning and unit.
META_KEYS = {
    "modality": "CT, NM or PT",
    "patient_id": "subject identifier",
    "patient_name": "subject name",
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "series_description": "free text",
    "frame_of_reference_uid": "FrameOfReferenceUID",
    "manufacturer": "scanner manufacturer",
    "species_description": "PatientSpeciesDescription (animal studies), e.g. Rattus norvegicus",
    "image_type": "DICOM ImageType values",
    "acquisition_start": "datetime of the acquisition start (timezone-naive)",
    "duration_s": "acquisition wall time in seconds",
    "units": "what voxel values mean after value mapping: Bq/mL, counts, cps, HU",
    "value_mapping": "how stored values were turned into units (RWVM, rescale, none)",
    "decay_correction": "NONE, START or ADMIN: the time the values refer to",
    "decay_factor": "DecayFactor applied by the scanner",
    "frame_reference_time_s": "FrameReferenceTime in seconds",
    "decay_reference_offset_s": "START/TIME: seconds from the acquisition start to the time the values refer to "
                                "(negative: before it, e.g. the series start of a later PET bed)",
    "radionuclide": "nuclide name, e.g. Tc-99m",
    "half_life_h": "physical half-life in hours",
    "injected_activity_mbq": "injected (administered) activity in MBq",
    "injection_time": "datetime of injection (timezone-naive)",
    "corrections": "list of corrections applied (ATTN, SCAT, DECY...)",
    "tracer": "radiopharmaceutical name",
    "timezone_offset": "TimezoneOffsetFromUTC as +HHMM",
}


@dataclass
class Sourced:
    """A metadata value with where it came from.

    Examples
    --------
    >>> Sourced(185.0, "RadionuclideTotalDose (0018,1074)")
    Sourced(value=185.0, source='RadionuclideTotalDose (0018,1074)')
    """

    value: Any
    source: str

    def to_json(self) -> dict:
        v = self.value
        if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
            v = v.isoformat()
        elif isinstance(v, tuple):
            v = list(v)
        return {"value": v, "source": self.source}


@dataclass
class Series:
    """One loaded image series (a CT volume, a SPECT or PET volume).

    Parameters
    ----------
    image : Image
        Voxel values in ``meta['units']`` on the LPS grid.
    modality : str
        ``"CT"``, ``"NM"`` or ``"PT"``.
    meta : dict of str to Sourced
        Metadata (see :data:`META_KEYS`).
    files : list of Path
        Files the series was read from.
    """

    image: Image
    modality: str
    meta: dict[str, Sourced] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def get(self, key: str, default=None):
        """Value of a metadata key, or ``default`` when absent."""
        s = self.meta.get(key)
        return default if s is None or s.value is None else s.value

    def source(self, key: str) -> str | None:
        s = self.meta.get(key)
        return None if s is None else s.source

    def set(self, key: str, value, source: str) -> None:
        self.meta[key] = Sourced(value, source)

    @property
    def acquisition_start(self) -> _dt.datetime | None:
        return self.get("acquisition_start")

    def describe(self) -> str:
        d = self.get("series_description") or ""
        shape = "x".join(str(n) for n in self.image.shape_ijk)
        sp = "x".join(f"{v:.3g}" for v in self.image.spacing_mm)
        return f"{self.modality} {shape} @ {sp} mm {d}".strip()


@dataclass
class TimePoint:
    """One imaging time point: an emission volume and, if present, its CT."""

    emission: Series
    ct: Series | None = None
    index: int = 0

    @property
    def acquisition_start(self) -> _dt.datetime | None:
        return self.emission.acquisition_start

    @property
    def label(self) -> str:
        return f"tp{self.index}"


@dataclass
class Study:
    """A subject's imaging time series.

    Attributes
    ----------
    timepoints : list of TimePoint
        Sorted by acquisition start.
    subject : str
        Subject identifier (PatientID or the folder name).
    path : Path
        Where the study was loaded from.
    warnings : list of str
        Things the loader skipped or guessed (shown to the user).
    """

    timepoints: list[TimePoint]
    subject: str = ""
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    extra_series: list[Series] = field(default_factory=list)

    @property
    def input_files(self) -> list[Path]:
        files = []
        for tp in self.timepoints:
            files += list(tp.emission.files)
            if tp.ct is not None:
                files += list(tp.ct.files)
        return files

"""DICOM folders into :class:`~spectrack.load.model.Series` (CT, SPECT, PET).

What is read (``REFERENCE.md`` section 3)
------------------------------------------
* **CT** (CT Image Storage): one file per slice, sorted by position along the
  slice normal (never by ``InstanceNumber``); slice spacing from the
  positions; HU = stored * ``RescaleSlope`` + ``RescaleIntercept``.
* **SPECT** (NM Image Storage, ``ImageType`` value 3 ``RECON TOMO`` or
  ``RECON GATED TOMO``): one multi-frame object. Position and orientation come
  from ``DetectorInformationSequence[0]``, the slice step from
  ``SpacingBetweenSlices`` *with its sign*, frames are ordered by
  ``SliceVector``. Gates of a gated reconstruction in counts are summed.
* **PET** (PET Image Storage): one file per slice with its own
  ``RescaleSlope``; the spacing comes from the positions (``SliceThickness``
  is not the spacing).
* Planar NM (``STATIC``, ``WHOLE BODY``, ``DYNAMIC``, ``GATED``, ``TOMO``
  projections) is not a volume: skipped with a warning;
  :func:`planar_counts` reads it for calibrations.

Values become float32 in ``meta['units']``, found in this order:
``RealWorldValueMappingSequence`` (UCUM units), then ``RescaleSlope`` /
``RescaleIntercept`` with ``Units`` (``BQML``, ``CNTS``, ``CPS``), then plain
counts for NM. Every metadata value is a :class:`~spectrack.load.model.Sourced`
naming its DICOM keyword and tag; a missing tag leaves its key absent.

Geometry follows :mod:`spectrack.geometry` (LPS, array ``[k, j, i]``).

Besides :data:`~spectrack.load.model.META_KEYS`, the readers may fill
``injection_time_of_day`` (only ``RadiopharmaceuticalStartTime``: the study
layer chooses the date), ``decay_factor_per_slice`` and
``frame_reference_time_s_per_slice`` (slice series), ``decay_reference_offset_s``
(START: seconds from the acquisition start to the time the values refer to,
the PET series reference ``SeriesDate``/``SeriesTime`` checked against
``FrameReferenceTime`` and ``DecayFactor``), ``beds_normalised`` (slices of
several beds in one series put on the first bed's start and duration),
``dose_calibration_factor``,
``radionuclide_code`` (an unrecognised code), ``gates_summed``, ``geometry``
(where position, orientation and spacing came from), ``injection_timezone_offset``
(the UTC offset suffix of ``RadiopharmaceuticalStartDateTime``) and
``load_warnings`` (what the reader noted; :func:`load_dicom_folder` returns
them too).

Bad input never gives a traceback: a malformed geometry or pixel tag raises
:class:`~spectrack.errors.InputError` naming the file and the tag; a
malformed optional tag (times, dose, duration, units, sequences) becomes a
warning and the value stays absent; an unreadable or truncated file is
skipped with a warning. Declared pixel data above 8 GiB, or larger than the
file holds, is refused before anything is allocated. Pixel data is read
straight from the file into numpy (pydicom defers it), so a folder's
datasets never hold every file's pixels at once. Series whose times carry
different UTC offsets are brought onto one clock
(:func:`normalise_timezones`).

Layout
------
The package is split by concern; import from ``spectrack.load.dicom``, not
from the modules (their layout is internal):

* :mod:`.files`: reading files (lenient, deferred pixel data), the pixel
  data as stored, what kind of object a data set is;
* :mod:`.tags`: typed tag access (values from still-raw elements, malformed
  values as :class:`~spectrack.errors.InputError`);
* :mod:`.times`: DICOM DA/TM/DT, the start-time routes, UTC offsets
  (:func:`normalise_timezones`);
* :mod:`.units`: value mapping (RWVM, rescale, ``Units``) and rescaling;
* :mod:`.header`: geometry, identity, start time and radiopharmaceutical
  metadata that every reader takes;
* :mod:`.decay`: decay state (``DecayCorrection``, ``DecayFactor``,
  ``FrameReferenceTime``, the decay reference time);
* :mod:`.nm`: NM multi-frame (SPECT reconstructions, :func:`planar_counts`);
* :mod:`.stacks`: slice stacks, CT and PET (:func:`read_ct_series`,
  :func:`read_pet_series`); :mod:`.pet`: their PET-only duration and bed
  positions;
* :mod:`.folder`: :func:`load_dicom_folder`.
"""

from __future__ import annotations

from .files import SOP_CLASSES, dcmread_lenient, looks_like_dicom
from .files import _deferred, _read_file  # noqa: F401 - not public; tests/test_hardening.py reads them here
from .folder import load_dicom_folder
from .nm import planar_counts, read_nm_multiframe
from .stacks import read_ct_series, read_pet_series
from .times import normalise_timezones

__all__ = [
    "load_dicom_folder",
    "read_nm_multiframe",
    "read_ct_series",
    "read_pet_series",
    "planar_counts",
    "normalise_timezones",
    "dcmread_lenient",
    "looks_like_dicom",
    "SOP_CLASSES",
]

"""NIfTI volumes with PET-BIDS-style JSON sidecars.

A NIfTI image becomes a :class:`~spectrack.load.model.Series`; its sidecar
``<stem>.json`` (same stem) supplies the metadata, with PET-BIDS key names
(``REFERENCE.md`` section 4): ``TracerName``, ``TracerRadionuclide``,
``InjectedRadioactivity`` + ``InjectedRadioactivityUnits``, ``TimeZero``,
``InjectionStart``, ``ScanStart``, ``FrameTimesStart``, ``FrameDuration``,
``ImageDecayCorrected``, ``ImageDecayCorrectionTime``, ``Units``,
``Manufacturer``, ``AttenuationCorrection``. ``Modality`` (NM, PT, CT),
``AcquisitionDateTime``, ``AcquisitionTime``, ``SeriesTime``, ``DecayCorrection``
and ``DecayCorrectionFactor``/``DecayFactor`` are read too (dcm2niix writes
them). Scan dates come from ``scans.tsv`` (``filename``, ``acq_time``: the
first frame's start) in the folder or a parent.

dcm2niix's PET sidecars count from the series start: ``ScanStart`` 0,
``FrameTimesStart`` the bed's start after it, ``ImageDecayCorrectionTime`` 0
for START (the values refer to ``ScanStart``, i.e. the series start) or the
injection for ADMIN; they hold no ``TimeZero`` or ``InjectionStart``. A
missing ``InjectionStart`` is never taken as 0: the injection time is then
unknown unless ADMIN's decay time gives it.

A NIfTI file with a ``<stem>.tsv`` beside it (or named ``labels*``/``*_dseg``)
is a label map, not an image, and is not loaded here.

Layout
------
A package split by concern; import from ``spectrack.load.nifti``, not from
the modules (their layout is internal):

* :mod:`.values`: sidecar values (numbers, flags, units, ISO date-times);
* :mod:`.folder`: which files of a folder are images, and ``scans.tsv``;
* :mod:`.voxels`: reading the voxels with nibabel and checking them against
  the header (:func:`verify_voxel_data`);
* :mod:`.times`: acquisition, injection and decay-correction times of a
  sidecar;
* :mod:`.series`: :func:`read_nifti_series`.
"""

from __future__ import annotations

from .folder import find_nifti_files, is_label_file, read_scans_tsv
from .series import read_nifti_series
from .values import _UNITS  # noqa: F401 - not public; load/study.py reads it here
from .values import activity_to_mbq, parse_datetime, parse_datetime_offset, parse_time_of_day
from .voxels import MAX_BYTES, verify_gzip_stream, verify_voxel_data  # noqa: F401 - importable here as before
from .voxels import _check_header, _read_voxels  # noqa: F401 - not public; regions/labels.py, kinetics/resolution.py

__all__ = ["read_nifti_series", "is_label_file", "find_nifti_files", "read_scans_tsv", "parse_datetime",
           "parse_datetime_offset", "parse_time_of_day", "activity_to_mbq"]

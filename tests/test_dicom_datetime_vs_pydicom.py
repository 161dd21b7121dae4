"""spectrack's DICOM DA/TM/DT parsers (spectrack.load.dicom.times) against pydicom.valuerep.DA/TM/DT.

Issue 14: use pydicom's value representations where they do the job, keep hand-written parsing only where a
test shows pydicom wrong (or too slow) for what the loaders must accept. This file is that test:

* on ordinary values, and on every single DA/TM/DT value of the real scanner files (``../shared/realdata``),
  both give the same date, time or date-time (or both refuse), except the placeholder dates below;
* for each class of values where spectrack keeps its own parsing, it shows what pydicom gives (a value, an
  exception, a warning) and what spectrack gives, and why spectrack's answer is the one the loaders need.

The differences, by DICOM PS3.5 section 6.2 (Table 6.2-1):

* DA accepts only the digits (``YYYYMMDD``, and the old ``YYYY.MM.DD``); pydicom's DA takes any eight
  characters whose slices ``int()`` reads (``"2025 7 9"``, ``"2025+7+9"``) as a date: spectrack refuses them.
* TM: the standard recommends also reading the pre-3.0 ``HH:MM:SS.frac`` form: pydicom refuses it, spectrack
  reads it. More than 6 fraction digits is not conformant: pydicom refuses the value, spectrack keeps the first
  6 digits. A trailing ``.`` with no fraction: pydicom reads it, spectrack refuses it.
* A leap second (``SS`` = 60, allowed by PS3.5): both give second 59, but pydicom warns (a UserWarning per value
  read, an error under this suite's ``filterwarnings = error``); spectrack reads it silently.
* DT: the UTC offset ``&ZZXX`` is -1200 to +1400: pydicom takes any offset, spectrack refuses one of more
  than 14 hours either way (-1300 and -1400 pass its check). pydicom matches a prefix, so a value with trailing characters reads as if they were not there:
  spectrack refuses it.
* Not a disagreement on the standard, spectrack's own rules for start times: a DT without the hour (``YYYY``,
  ``YYYYMMDD``: conformant, with null trailing components) is no scan start (pydicom reads midnight / 1
  January), so the loader tries the next time tag; a year before 1900 is a placeholder (the EARL-PET files carry
  ``ContentDate`` and ``StudyDate`` 00010101, which pydicom reads as 1 January of year 1).

So no class of values is parsed by pydicom: where the two agree, spectrack's pattern is still what decides
which texts are accepted, and handing the digits it matched to pydicom would parse each value twice and change
the messages of refused values (they appear in the load warnings).
"""

import datetime as dt
import warnings

import pydicom
import pytest
from pydicom.valuerep import DA, DT, TM

from spectrack.load.dicom.times import _parse_da, _parse_dt, _parse_tm


def _pydicom(vr: str, text: str):
    """(value as plain datetime objects, or the exception type; the warnings pydicom gave)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            v = {"DA": DA, "TM": TM, "DT": DT}[vr](text)
        except (ValueError, TypeError, OverflowError) as e:
            return type(e), [str(w.message) for w in caught]
    if vr == "DA":
        out = dt.date(v.year, v.month, v.day)
    elif vr == "TM":
        out = dt.time(v.hour, v.minute, v.second, v.microsecond)
    else:
        off = v.utcoffset()
        if off is not None:
            minutes = int(off.total_seconds() // 60)
            off = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
        out = (v.replace(tzinfo=None), off)
    return out, [str(w.message) for w in caught]


def _spectrack(vr: str, text: str):
    """spectrack's value, or ValueError when it refuses the text."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # spectrack's parsers never warn
        try:
            return {"DA": _parse_da, "TM": _parse_tm, "DT": _parse_dt}[vr](text)
        except ValueError:
            return ValueError


# ------------------------------------------------------------------ where they agree
ORDINARY = [
    ("DA", "20250709"), ("DA", "2025.07.09"), ("DA", "19000101"), ("DA", "20240229"),
    ("TM", "122804.000000"), ("TM", "122804"), ("TM", "1228"), ("TM", "12"), ("TM", "092054.496"),
    ("TM", "095437.00"), ("TM", "000000.000000"), ("TM", "235959.999999"),
    ("DT", "20250709122804.000000+0200"), ("DT", "20250709122804"), ("DT", "202507091228"), ("DT", "2025070912"),
    ("DT", "20250709122804.123+0100"), ("DT", "20250709122804-0500"), ("DT", "20250709122804+1400"),
    ("DT", "20250709122804-1200"), ("DT", "20250709122804.1234567"),
]
BOTH_REFUSE = [
    ("DA", "20250230"), ("DA", "00000000"), ("DA", "2025070"), ("DA", "July 9"),
    ("TM", "246000"), ("TM", "126100"), ("TM", "noon"),
    ("DT", "20251309120000"), ("DT", "20250732120000"), ("DT", "tomorrow"),
]


@pytest.mark.parametrize("vr, text", ORDINARY)
def test_ordinary_values_read_the_same(vr, text):
    theirs, warned = _pydicom(vr, text)
    assert warned == []
    assert _spectrack(vr, text) == theirs


@pytest.mark.parametrize("vr, text", BOTH_REFUSE)
def test_impossible_values_are_refused_by_both(vr, text):
    assert _pydicom(vr, text)[0] is ValueError
    assert _spectrack(vr, text) is ValueError


# ------------------------------------------------------------------ where spectrack keeps its own parsing
D, T, DTM = dt.date, dt.time, dt.datetime
DIFFERENCES = [
    # (VR, text, pydicom's value or exception, spectrack's value or ValueError, why spectrack's is kept)
    ("DA", "2025 7 9", D(2025, 7, 9), ValueError, "DA is digits only: pydicom int()s each slice"),
    ("DA", "2025+7+9", D(2025, 7, 9), ValueError, "DA is digits only: pydicom int()s each slice"),
    ("DA", "2025-07-09", ValueError, D(2025, 7, 9), "ISO dashes, not conformant: spectrack is lenient"),
    ("DA", "2025.0709", ValueError, D(2025, 7, 9), "one old-style separator, not conformant: lenient"),
    ("DA", "00010101", D(1, 1, 1), ValueError, "a placeholder date (EARL-PET ContentDate): no scan date"),
    ("DA", "18991231", D(1899, 12, 31), ValueError, "before 1900: a placeholder"),
    ("TM", "12:28:04", ValueError, T(12, 28, 4), "PS3.5 recommends reading the pre-3.0 HH:MM:SS form"),
    ("TM", "12:28", ValueError, T(12, 28), "PS3.5 recommends reading the pre-3.0 HH:MM form"),
    ("TM", "12:28:04.5", ValueError, T(12, 28, 4, 500000), "pre-3.0 form with a fraction"),
    ("TM", "122804.1234567", ValueError, T(12, 28, 4, 123456), "over 6 fraction digits: the first 6 kept"),
    ("TM", "122804.", T(12, 28, 4), ValueError, "a fraction separator with no digit: not a TM"),
    ("DT", "20250709", DTM(2025, 7, 9), ValueError, "no hour: no scan start (the next time tag is tried)"),
    ("DT", "2025", DTM(2025, 1, 1), ValueError, "no hour: no scan start (the next time tag is tried)"),
    ("DT", "20250709122804xyz", (DTM(2025, 7, 9, 12, 28, 4), None), ValueError,
     "trailing characters: pydicom matches a prefix"),
    ("DT", "20250709122804+1500", (DTM(2025, 7, 9, 12, 28, 4), "+1500"), ValueError,
     "UTC offsets run from -1200 to +1400 (PS3.5)"),
    ("DT", "20250709122804-1500", (DTM(2025, 7, 9, 12, 28, 4), "-1500"), ValueError,
     "UTC offsets run from -1200 to +1400 (PS3.5); spectrack refuses beyond 14 h either way"),
    ("DT", "18991231120000", (DTM(1899, 12, 31, 12), None), ValueError, "before 1900: a placeholder"),
]


@pytest.mark.parametrize("vr, text, theirs, ours, why", DIFFERENCES, ids=[f"{d[0]}-{d[1]}" for d in DIFFERENCES])
def test_where_spectrack_keeps_its_own_parsing(vr, text, theirs, ours, why):
    got, _ = _pydicom(vr, text)
    if vr == "DT" and isinstance(theirs, DTM):  # pydicom gives no offset for these
        theirs = (theirs, None)
    assert got == theirs, f"pydicom {pydicom.__version__} changed on {text!r}: re-check {why!r}"
    assert _spectrack(vr, text) == ours


@pytest.mark.parametrize("vr, text, value", [
    ("TM", "122860", T(12, 28, 59)), ("TM", "235960.5", T(23, 59, 59, 500000)),
    ("DT", "20250709122860", (DTM(2025, 7, 9, 12, 28, 59), None)),
])
def test_a_leap_second_reads_the_same_but_pydicom_warns(vr, text, value):
    got, warned = _pydicom(vr, text)
    assert got == value and _spectrack(vr, text) == value
    assert len(warned) == 1 and "60" in warned[0]


# ------------------------------------------------------------------ real scanner files
def test_every_date_and_time_of_the_real_files_reads_the_same(realdata):
    files = sorted((realdata / "linaqa").rglob("*.dcm")) + sorted((realdata / "linaqa" / "EARL-PET").glob("*.IMA"))[:3]
    if not files:
        pytest.skip("no DICOM file in ../shared/realdata/linaqa")
    values = []
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's remarks on other elements (an SH too long)
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            values += [(f.name, el.keyword, el.VR, str(el.value).strip()) for el in ds.iterall()
                       if el.VR in ("DA", "TM", "DT") and el.VM == 1 and str(el.value).strip()]
    placeholders = set()
    for name, keyword, vr, text in values:
        theirs, warned = _pydicom(vr, text)
        ours = _spectrack(vr, text)
        if ours is ValueError and theirs is not ValueError and vr == "DA" and theirs.year < 1900:
            placeholders.add((keyword, text))  # spectrack's placeholder rule, the one difference
            continue
        assert warned == [] and ours == theirs, (name, keyword, text, theirs, ours)
    assert len(values) > 20
    if any(f.suffix == ".IMA" for f in files):
        assert ("ContentDate", "00010101") in placeholders

"""Fuzz tests of label maps: mutated NIfTI label images and names sidecars (hypothesis).

Every case writes a label map of the two-region phantom study of
``tests/conftest.py`` (``make_nifti_study``: brain and liver with exact %ID)
with one family of mutations, then reads it with
:func:`spectrack.regions.formats.nifti.read_label_map` and quantifies the study with
it through :func:`spectrack.quantify`. Each step must either raise a
:class:`spectrack.errors.SpectrackError` with a one-line message, or give the
right answer, known from the mutation:

* a mutation that keeps what the file means (identity scaling, another
  integer or float datatype holding the same integers, a 4-D file of one
  volume, the same voxels after damage outside them) gives the phantom's
  exact %ID under the same names;
* labels renumbered (up to huge values) and regions renamed give the same
  numbers under the new values and names;
* what cannot be read as the right regions (non-identity scaling, non-integer,
  NaN, infinite or negative labels, a singular or non-finite affine, 2-D or
  multi-volume files, a broken gzip stream, duplicate, empty or reserved
  names, names that are not UTF-8, index keys that are not integers,
  conflicting names for one index) is refused.

``CASES`` counts the cases; a number that differs from the truth counts in
``wrong``, any other exception in ``failures``; ``test_zz_label_fuzz_summary``
prints them. ``SPECTRACK_FUZZ_EXAMPLES`` (as for ``test_fuzz_loaders.py``)
sets the examples per family for longer runs; ``SPECTRACK_FUZZ_RANDOM=1``
draws new examples.
"""

from __future__ import annotations

import atexit
import gzip
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import fuzz_step, make_nifti_study  # noqa: E402

import spectrack  # noqa: E402
from spectrack.regions.formats.nifti import read_label_map  # noqa: E402
from spectrack.regions.labelmap import RESERVED_NAMES  # noqa: E402
from spectrack.regions.vocabulary import GROUPS  # noqa: E402

CASES: Counter = Counter()
# a longer campaign: SPECTRACK_FUZZ_EXAMPLES=2000 SPECTRACK_FUZZ_RANDOM=1 pytest tests/test_fuzz_labels.py
N_EXAMPLES = int(os.environ.get("SPECTRACK_FUZZ_EXAMPLES", "0")) or 60
DERANDOMIZE = not os.environ.get("SPECTRACK_FUZZ_RANDOM")
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

# NIfTI-1 header fields: (offset, struct format)
SCL_SLOPE, SCL_INTER, QFORM_CODE, SFORM_CODE, PIXDIM, SROW = 112, 116, 252, 254, 76, 280


# ------------------------------------------------------------------ the study and its truth
class _Study:
    """The phantom study, written once: its folder, loaded study, label voxels, affine and truth."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="spectrack-fuzz-labels-"))
        atexit.register(shutil.rmtree, self.root, True)
        self.truth = make_nifti_study(self.root / "s")
        self.study = spectrack.load_study(self.root / "s")
        img = nib.load(str(self.root / "s" / "labels.nii.gz"))
        self.arr = np.asarray(img.dataobj).astype(np.int64)  # NIfTI (i, j, k) order; 1 = brain, 2 = liver
        self.affine = np.asarray(img.affine, float)
        self.n_voxels = {1: int((self.arr == 1).sum()), 2: int((self.arr == 2).sum())}
        self.n = 0

    def case_dir(self) -> Path:
        self.n += 1
        d = self.root / f"case{self.n}"
        d.mkdir()
        return d


_STUDY: _Study | None = None


def study() -> _Study:
    global _STUDY
    if _STUDY is None:
        _STUDY = _Study()
    return _STUDY


def _write(folder: Path, arr, *, dtype=np.int16, affine=None, gz=True, patch=None, name="labels") -> Path:
    """A NIfTI label image of ``arr`` stored as ``dtype``; ``patch(blob)`` edits the header bytes."""
    s = study()
    arr = np.asarray(arr)
    img = nib.Nifti1Image(arr.astype(dtype), s.affine if affine is None else affine, dtype=dtype)
    img.header.set_xyzt_units("mm")
    raw = folder / f"{name}.nii"
    nib.save(img, str(raw))
    blob = bytearray(raw.read_bytes())
    if patch is not None:
        patch(blob)
    if gz:
        raw.unlink()
        path = folder / f"{name}.nii.gz"
        path.write_bytes(gzip.compress(bytes(blob), compresslevel=1))
        return path
    raw.write_bytes(bytes(blob))
    return raw


def _names_tsv(folder: Path, rows, *, header=True, name="labels", encoding="utf-8") -> Path:
    text = ("index\tname\n" if header else "") + "".join(f"{k}\t{v}\n" for k, v in rows)
    p = folder / f"{name}.tsv"
    p.write_bytes(text.encode(encoding))
    return p


def _run(kind: str, fn):
    """One step of a case: its result, or None when refused in one line; anything else fails the test."""
    return fuzz_step(CASES, kind, fn)


def _wrong(msg: str):
    CASES["wrong"] += 1
    pytest.fail(msg)


def _check(path: Path, expect: dict[str, tuple[int, int]] | None, *, names=None, what: str = "",
           may_refuse: bool = False):
    """Read ``path`` and quantify the study with it.

    ``expect`` maps each region name to (label value, phantom region 1 or 2): the only right answer when the
    case is accepted. ``None``: the case must be refused (by the reader, or else by quantify). ``may_refuse``:
    refusing is right too (the file may or may not still say what it said before the mutation).
    """
    s = study()
    lm = _run("label map", lambda: read_label_map(path, names=names))
    if lm is not None and expect is not None:
        got = {lm.names.get(v, f"label_{v}"): v for v in lm.present()}
        if got != {n: v for n, (v, _) in expect.items()}:
            _wrong(f"{what}: read regions {got}, the file holds {expect}")
    if lm is None and names is not None:
        if expect is not None and not may_refuse:
            _wrong(f"{what}: names {names} for the right regions {expect} were refused")
        return  # quantify reads a path with its sidecar only: the names given to the reader cannot reach it
    df = _run("label study", lambda: spectrack.quantify(s.study, lm if names is not None else path))
    if df is None:
        if expect is not None and not may_refuse:
            _wrong(f"{what}: a label map holding the right regions {expect} was refused")
        return
    if expect is None:
        _wrong(f"{what}: quantified although the label map cannot be read as the right regions:\n"
               f"{df[['timepoint', 'region', 'label', 'pct_id']].to_string()}")
    regions = df[df["kind"] == "region"]
    if set(regions["region"]) != set(expect):
        _wrong(f"{what}: regions {sorted(set(regions['region']))}, expected {sorted(expect)}")
    for tp, truth in enumerate(s.truth):
        rows = regions[regions["timepoint"] == tp].set_index("region")
        for name, (value, which) in expect.items():
            want = truth["brain" if which == 1 else "liver"]
            r = rows.loc[name]
            if (int(r["label"]) != value or int(r["n_voxels"]) != s.n_voxels[which]
                    or not math.isclose(float(r["pct_id"]), want, rel_tol=1e-5, abs_tol=1e-5)):
                _wrong(f"{what}: time point {tp} {name}: label {r['label']}, {r['n_voxels']} voxels, "
                       f"{r['pct_id']} %ID; the truth is label {value}, {s.n_voxels[which]} voxels, {want} %ID")
        fov = df[(df["timepoint"] == tp) & (df["kind"] == "fov")]["pct_id"].iloc[0]
        if not math.isclose(float(fov), truth["brain"] + truth["liver"], rel_tol=1e-5):
            _wrong(f"{what}: time point {tp} field of view {fov} %ID, truth {truth['brain'] + truth['liver']}")


BASE = {"brain": (1, 1), "liver": (2, 2)}

# ------------------------------------------------------------------ label values and data types
INT_TYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
FLOAT_TYPES = [np.float32, np.float64]
HUGE = [1, 2, 3, 7, 127, 128, 255, 256, 1000, 32767, 32768, 65535, 65536, 2**20, 2**20 + 1, 2**24 - 1, 2**24,
        2**24 + 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
VALID_NAMES = ["brain", "liver", "Brain stem", "region_7", "fóie", "脳", "canal_lumbar", "kidney_left",
               "a" * 200, "csf_intracranial"]


def _fits(values, dtype) -> bool:
    """Every value stored exactly in ``dtype``."""
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    for v in values:
        if info is not None and not (info.min <= v <= info.max):
            return False
        if info is None and int(np.array(v, dtype=np.float64).astype(dtype)) != v:
            return False
        if info is None and float(v) != float(np.array(float(v), dtype)):
            return False
    return True


def _relabelled(a: int, b: int, dtype) -> np.ndarray:
    s = study()
    out = np.zeros(s.arr.shape, dtype=dtype)
    out[s.arr == 1] = np.array(a).astype(dtype) if a < 2**63 else np.uint64(a)
    out[s.arr == 2] = np.array(b).astype(dtype) if b < 2**63 else np.uint64(b)
    return out


@FUZZ
@given(a=st.sampled_from(HUGE), b=st.sampled_from(HUGE), dtype=st.sampled_from(INT_TYPES + FLOAT_TYPES),
       names=st.one_of(st.none(), st.lists(st.sampled_from(VALID_NAMES), min_size=2, max_size=2, unique=True)),
       how=st.sampled_from(["tsv", "tsv-no-header", "tsv-bom-crlf", "json", "json-list", "api"]),
       extra=st.sampled_from([None, 0, 99, 2**40]), gz=st.booleans())
def test_labels_renumbered_renamed_and_retyped_give_the_same_numbers(a, b, dtype, names, how, extra, gz):
    """Any two distinct label values, any integer or float datatype holding them exactly, names by any sidecar
    (or none: label_<value>), with a name for an absent label: the phantom's %ID under those values and names."""
    assume(a != b and _fits([a, b], dtype))
    d = study().case_dir()
    if max(a, b) > 2**63 - 1:  # above what spectrack holds (int64 labels): refused, never wrapped around
        _check(_write(d, _relabelled(a, b, dtype), dtype=dtype, gz=gz), None, what=f"labels {a}/{b} as uint64")
        return
    p = _write(d, _relabelled(a, b, dtype), dtype=dtype, gz=gz)
    api = None
    if names is None:
        expect = {f"label_{a}": (a, 1), f"label_{b}": (b, 2)}
    else:
        table = {a: names[0], b: names[1]}
        if extra is not None and extra not in (a, b) and f"absent_{extra}" not in names:
            table[extra] = f"absent_{extra}"  # a name for a label the map does not hold: not in the table
        expect = {names[0]: (a, 1), names[1]: (b, 2)}
        if how == "api":
            api = table
        elif how.startswith("tsv"):
            text = ("" if how == "tsv-no-header" else "index\tname\n") + "".join(f"{k}\t{v}\n" for k, v in
                                                                              table.items())
            if how == "tsv-bom-crlf":
                text = "\ufeff" + text.replace("\n", "\r\n")
            (d / "labels.tsv").write_text(text, encoding="utf-8", newline="")
        elif how == "json":
            (d / "labels.json").write_text(json.dumps({str(k): v for k, v in table.items()}), encoding="utf-8")
        else:
            (d / "labels.json").write_text(json.dumps([{"index": k, "name": v} for k, v in table.items()]),
                                           encoding="utf-8")
    _check(p, expect, names=api, what=f"labels {a}/{b} as {np.dtype(dtype).name}, names {names} by {how}")


BAD_VALUES = [float("nan"), float("inf"), -float("inf"), -1.0, -2.0, -32768.0, 0.5, 1.5, 1.25, 2.01, 0.99,
              1e-2, 3.3e38, -1e-2]


@FUZZ
@given(value=st.sampled_from(BAD_VALUES), where=st.sampled_from(["background", "brain", "liver", "all"]),
       n=st.integers(1, 5), dtype=st.sampled_from(FLOAT_TYPES + [np.int8, np.int16, np.int32, np.int64]),
       gz=st.booleans())
def test_labels_non_integer_nan_inf_or_negative_are_refused(value, where, n, dtype, gz):
    """A voxel whose label is not a non-negative integer makes the map unreadable as regions: refused."""
    s = study()
    arr = s.arr.astype(np.float64)
    idx = np.flatnonzero({"background": arr == 0, "brain": arr == 1, "liver": arr == 2,
                          "all": np.ones(arr.shape, bool)}[where])[:n]
    arr.flat[idx] = value
    if np.issubdtype(dtype, np.integer):
        assume(np.isfinite(value) and value == int(value) and _fits([int(value)], dtype))
    elif dtype == np.float32 and abs(value) > 3e38 and np.isfinite(value):
        value = 3.3e38
    d = s.case_dir()
    p = _write(d, arr, dtype=dtype, gz=gz)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    _check(p, None, what=f"{n} {where} voxel(s) labelled {value} as {np.dtype(dtype).name}")


@FUZZ
@given(dtype=st.sampled_from(FLOAT_TYPES), eps=st.sampled_from([1e-9, 1e-7, 1e-6, -1e-6, 1e-5]), gz=st.booleans())
def test_labels_with_float_rounding_noise_read_as_the_integers(dtype, eps, gz):
    """Float labels a rounding error away from integers (a resampled map saved as float): the integers."""
    s = study()
    arr = s.arr.astype(np.float64)
    arr[arr > 0] += eps
    d = s.case_dir()
    p = _write(d, arr, dtype=dtype, gz=gz)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    _check(p, BASE, what=f"labels + {eps} as {np.dtype(dtype).name}")


@FUZZ
@given(imag=st.sampled_from([0.0, 0.5, 1.0]), gz=st.booleans())
def test_complex_labels_are_refused_or_read_exactly(imag, gz):
    """A complex-valued label image: refused, or (imaginary part 0) the same regions."""
    s = study()
    arr = s.arr.astype(np.complex64) + np.complex64(1j * imag) * (s.arr > 0)
    d = s.case_dir()
    p = _write(d, arr, dtype=np.complex64, gz=gz)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    lm = _run("label map", lambda: read_label_map(p))
    if lm is not None and imag != 0:
        _wrong(f"complex labels with imaginary part {imag} were read as regions {lm.names}")
    if lm is not None:
        _check(p, BASE, what="complex labels, imaginary part 0")


# ------------------------------------------------------------------ intensity scaling
SCALES = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 1.0000001, 0.9999999, 1e-30, 1e30, float("nan"), float("inf"),
          -float("inf")]
INTERS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-7, 1e30, float("nan"), float("inf")]


@FUZZ
@given(slope=st.sampled_from(SCALES), inter=st.sampled_from(INTERS),
       dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.float32]), gz=st.booleans())
def test_label_scaling_is_identity_or_refused(slope, inter, dtype, gz):
    """scl_slope/scl_inter in the header: the labels as stored when the scaling is none (slope 0 or NaN, or
    slope 1 with intercept 0, as NIfTI and nibabel read it); else refused, never renumbered regions."""

    def patch(blob):
        struct.pack_into("<f", blob, SCL_SLOPE, slope)
        struct.pack_into("<f", blob, SCL_INTER, inter)

    s = study()
    d = s.case_dir()
    p = _write(d, s.arr, dtype=dtype, gz=gz, patch=patch)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    # accepted, only the stored integers are a right answer (any other scaling would renumber the regions);
    # identity scaling (slope 1, intercept 0; or slope 0 or not finite: no scaling, as NIfTI says) must be read
    identity = (slope == 1.0 and inter == 0.0) or slope == 0.0 or not math.isfinite(slope)
    _check(p, BASE, what=f"scl_slope {slope}, scl_inter {inter}", may_refuse=not identity)


# ------------------------------------------------------------------ geometry and dimensions
def _srow(m):
    def patch(blob):
        struct.pack_into("<h", blob, QFORM_CODE, 0)
        struct.pack_into("<h", blob, SFORM_CODE, 2)
        struct.pack_into("<12f", blob, SROW, *np.asarray(m, float)[:3].ravel())
    return patch


def _bad_affines():
    s = study()
    a = s.affine
    col_same = a.copy()
    col_same[:3, 1] = a[:3, 0]
    zero_axis = a.copy()
    zero_axis[:3, 2] = 0
    nan = a.copy()
    nan[0, 3] = np.nan
    inf = a.copy()
    inf[1, 1] = np.inf
    zero = np.zeros((4, 4))
    zero[3, 3] = 1
    tiny = a.copy()
    tiny[:3, :3] *= 1e-30
    return {"two equal axes": col_same, "an axis of zero length": zero_axis, "NaN origin": nan,
            "infinite spacing": inf, "all zero": zero, "spacing 1e-30 mm": tiny}


@FUZZ
@given(kind=st.sampled_from(["two equal axes", "an axis of zero length", "NaN origin", "infinite spacing",
                             "all zero", "spacing 1e-30 mm", "pixdim 0, no sform", "pixdim NaN, no sform"]),
       gz=st.booleans(), dtype=st.sampled_from([np.uint8, np.int16, np.float32]))
def test_label_affine_singular_zero_or_not_finite_is_refused(kind, gz, dtype):
    """A label map whose voxel-to-world mapping is singular, zero or not finite cannot be placed: refused."""
    s = study()
    d = s.case_dir()
    if kind.startswith("pixdim"):
        v = 0.0 if "0" in kind else float("nan")

        def patch(blob):
            struct.pack_into("<h", blob, SFORM_CODE, 0)
            struct.pack_into("<h", blob, QFORM_CODE, 1)
            vals = list(struct.unpack_from("<8f", blob, PIXDIM))
            vals[1] = vals[2] = vals[3] = v
            struct.pack_into("<8f", blob, PIXDIM, *vals)
        p = _write(d, s.arr, dtype=dtype, gz=gz, patch=patch)
    else:
        p = _write(d, s.arr, dtype=dtype, gz=gz, patch=_srow(_bad_affines()[kind]))
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    _check(p, None, what=f"label affine: {kind}")


@FUZZ
@given(kind=st.sampled_from(["2-D", "1-D", "4-D of 2 volumes", "4-D of 1 volume", "5-D of 1 volume",
                             "4-D of 2 equal volumes", "empty axis"]),
       gz=st.booleans(), dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.float32]))
def test_label_dimensions_other_than_3d_are_refused(kind, gz, dtype):
    """2-D, 1-D and several-volume label maps are refused; one volume stored as 4-D or 5-D is that volume."""
    s = study()
    arr = s.arr
    expect = None
    if kind == "2-D":
        arr = arr[:, :, 4]
    elif kind == "1-D":
        arr = arr.ravel()
    elif kind == "4-D of 2 volumes":
        arr = np.stack([arr, (arr > 0) * 3], axis=-1)
    elif kind == "4-D of 2 equal volumes":
        arr = np.stack([arr, arr], axis=-1)
    elif kind == "4-D of 1 volume":
        arr, expect = arr[..., None], BASE
    elif kind == "5-D of 1 volume":
        arr = arr[..., None, None]
        expect = "either"
    else:
        arr = arr[:, :0, :]
    d = s.case_dir()
    p = _write(d, arr, dtype=dtype, gz=gz)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    if expect == "either":  # one volume in a 5-D file: the volume, or refused; never other regions
        lm = _run("label map", lambda: read_label_map(p))
        if lm is not None:
            _check(p, BASE, what=kind)
        return
    _check(p, expect, what=f"{kind} label map")


DATATYPES = {"uint8": (2, 8), "int8": (256, 8), "int16": (4, 16), "uint16": (512, 16), "int32": (8, 32),
             "uint32": (768, 32), "float32": (16, 32), "float64": (64, 64), "int64": (1024, 64), "rgb24": (128, 24),
             "complex64": (32, 64)}


@FUZZ
@given(datatype=st.sampled_from(sorted(DATATYPES)), bitpix_too=st.booleans(),
       dims=st.sampled_from([None, (9, 12, 14), (10, 12, 13), (10, 6, 14), (5, 12, 14), (11, 12, 14), (10, 12, 28)]),
       gz=st.booleans())
def test_label_header_datatype_or_size_changed_is_refused_or_right(datatype, bitpix_too, dims, gz):
    """int16 label voxels whose header declares another datatype or another size: refused, or (the same bytes
    and values, e.g. uint16, and the same size) the same regions; never other label values read as if fine."""
    code, bitpix = DATATYPES[datatype]

    def patch(blob):
        struct.pack_into("<h", blob, 70, code)
        if bitpix_too:
            struct.pack_into("<h", blob, 72, bitpix)
        if dims is not None:
            struct.pack_into("<3h", blob, 42, *dims)

    s = study()
    declared = int(np.prod(dims or s.arr.shape)) * np.dtype(np.complex64 if datatype == "complex64" else
                                                             np.uint8 if datatype == "rgb24" else datatype).itemsize
    declared *= 3 if datatype == "rgb24" else 1
    same = datatype in ("int16", "uint16") and dims is None
    # a header whose datatype and size were both changed so that they declare the file's byte count (int32 on
    # half the voxels) describes a self-consistent file: nothing in it can show the change; left out
    assume(same or declared != s.arr.size * 2)
    d = s.case_dir()
    p = _write(d, s.arr, dtype=np.int16, gz=gz, patch=patch)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    _check(p, BASE if same else None, what=f"int16 labels declared {datatype}, dims {dims}")


# ------------------------------------------------------------------ damaged files
@FUZZ
@given(data=st.data(), gz=st.booleans())
def test_label_file_damage_is_refused_or_harmless(data, gz):
    """Flipped bytes, a truncated file, a bad gzip CRC or length: refused, or (damage that leaves the label
    voxels and geometry intact, e.g. in the header's description) the same regions."""
    s = study()
    d = s.case_dir()
    p = _write(d, s.arr, dtype=np.int16, gz=gz)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    blob = bytearray(p.read_bytes())
    # an uncompressed file has no checksum: a flipped voxel byte is undetectable there, so it is only cut or
    # grown; in a .nii.gz every flip must be caught by the stream's CRC or length, or leave the file as it was
    how = data.draw(st.sampled_from(["flip", "flip", "flip", "truncate", "crc", "length", "append"] if gz else
                                    ["truncate", "truncate", "append"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(10 if gz else 0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    elif how == "crc":
        blob[-8] ^= 0xFF
    elif how == "length":
        blob[-1] ^= 0x01
    else:
        blob += bytes(data.draw(st.binary(min_size=1, max_size=64)))
    p.write_bytes(bytes(blob))
    lm = _run("label map", lambda: read_label_map(p))
    if lm is None:
        _check(p, None, what=f"damaged label file ({how})")  # quantify reads the same file: refused too
        return
    geometry = np.allclose(to_affine(lm), s.affine, atol=1e-4) and lm.image.array.shape == s.arr.shape[::-1]
    same = geometry and np.array_equal(lm.image.array.transpose(2, 1, 0), s.arr)
    if not same:
        _wrong(f"damaged label file ({how}) read as if fine, with other voxels or geometry")
    _check(p, BASE, what=f"damaged label file ({how}), voxels intact")


def to_affine(lm) -> np.ndarray:
    from spectrack.geometry import to_nifti_affine

    return to_nifti_affine(lm.image)[1]


# ------------------------------------------------------------------ NRRD and MetaImage label maps
def _write_itk(folder: Path, arr_ijk, dtype, ext: str, header_edit=None, compress=False) -> Path:
    """The label voxels (NIfTI i, j, k order) on the study's grid as an ITK file; ``header_edit(text)`` edits
    the text header of an uncompressed ``.mha``."""
    import SimpleITK as sitk

    from spectrack.geometry import to_sitk

    s = study()
    grid = s.study.timepoints[0].emission.image
    img = to_sitk(grid.with_array(np.asarray(arr_ijk).transpose(2, 1, 0).astype(dtype), units="label"))
    path = folder / f"labels{ext}"
    sitk.WriteImage(img, str(path), compress)
    if header_edit is not None and ext == ".nrrd":
        blob = path.read_bytes()
        cut = blob.index(b"\n\n") + 2
        path.write_bytes(header_edit(blob[:cut].decode("ascii")).encode("ascii") + blob[cut:])
    elif header_edit is not None:
        blob = path.read_bytes()
        cut = blob.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
        path.write_bytes(header_edit(blob[:cut].decode("ascii")).encode("ascii") + blob[cut:])
    return path


MHA_EDITS = {
    "spacing 0": ("ElementSpacing", "0 3 4"), "spacing NaN": ("ElementSpacing", "nan 3 4"),
    "spacing negative": ("ElementSpacing", "-3 3 4"), "spacing inf": ("ElementSpacing", "inf 3 4"),
    "two equal axes": ("TransformMatrix", "1 0 0 1 0 0 0 0 1"), "zero matrix": ("TransformMatrix", "0 0 0 0 0 0 0 0 0"),
    "NaN origin": ("Offset", "nan 0 0"), "2-D": ("NDims", "2"), "5 dims": ("NDims", "5"),
    "larger size": ("DimSize", "14 12 11"), "smaller size": ("DimSize", "14 12 9"),
}


def _edit_mha(key: str, value: str):
    def edit(text: str) -> str:
        lines = [f"{key} = {value}" if ln.split(" = ")[0] == key else ln for ln in text.splitlines()]
        return "\n".join(lines) + "\n"
    return edit


@FUZZ
@given(ext=st.sampled_from([".nrrd", ".mha"]), a=st.sampled_from(HUGE[:18]), b=st.sampled_from(HUGE[:18]),
       dtype=st.sampled_from([np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.float32, np.float64]),
       bad=st.one_of(st.none(), st.sampled_from(BAD_VALUES)), names=st.booleans(), compress=st.booleans())
def test_itk_label_maps_renumbered_retyped_or_with_bad_values(ext, a, b, dtype, bad, names, compress):
    """NRRD and MetaImage label maps: renumbered and retyped labels give the phantom's numbers under their
    values and names; a NaN, infinite, negative or non-integer voxel is refused."""
    assume(a != b and _fits([a, b], dtype))
    s = study()
    arr = _relabelled(a, b, np.float64 if np.issubdtype(dtype, np.floating) else np.int64)
    if bad is not None:
        assume(np.issubdtype(dtype, np.floating) or (math.isfinite(bad) and bad == int(bad) and _fits([int(bad)], dtype)))
        arr = arr.astype(np.float64)
        arr.flat[0] = bad
    d = s.case_dir()
    p = _write_itk(d, arr, dtype, ext, compress=compress)
    if names:
        _names_tsv(d, [(a, "brain"), (b, "liver")])
    expect = None if bad is not None else ({"brain": (a, 1), "liver": (b, 2)} if names else
                                           {f"label_{a}": (a, 1), f"label_{b}": (b, 2)})
    _check(p, expect, what=f"{ext} labels {a}/{b} as {np.dtype(dtype).name}, bad voxel {bad}")


NRRD_EDITS = {"nrrd larger size": ("sizes", "14 12 11"), "nrrd smaller size": ("sizes", "14 12 9"),
              "nrrd zero direction": ("space directions", "(0,0,0) (0,3,0) (0,0,4)"),
              "nrrd two equal axes": ("space directions", "(3,0,0) (3,0,0) (0,0,4)"),
              "nrrd NaN origin": ("space origin", "(nan,0,0)"), "nrrd 2 dimensions": ("dimension", "2")}


def _edit_nrrd(key: str, value: str):
    def edit(text: str) -> str:
        lines = [f"{key}: {value}" if ln.split(":")[0] == key else ln for ln in text.rstrip("\n").splitlines()]
        return "\n".join(lines) + "\n\n"
    return edit


@FUZZ
@given(edit=st.sampled_from(sorted(MHA_EDITS) + sorted(NRRD_EDITS) + ["mha appended data", "nrrd appended data"]),
       dtype=st.sampled_from([np.uint8, np.int16, np.float32]), compress=st.booleans())
def test_itk_label_header_geometry_broken_is_refused(edit, dtype, compress):
    """A MetaImage or NRRD label map whose header gives zero, NaN, infinite or negative spacing, a singular
    direction, a NaN origin, other dimensions or another size than its data, or with bytes appended to its
    data: refused (never other regions)."""
    s = study()
    d = s.case_dir()
    if edit.endswith("appended data"):
        ext = "." + edit.split()[0]
        assume(not (compress and ext == ".mha"))  # compressed MetaImage data: its length is not checked
        p = _write_itk(d, s.arr, dtype, ext, compress=compress)
        p.write_bytes(p.read_bytes() + b"\x01\x00" * 8)
    elif edit.startswith("nrrd"):
        p = _write_itk(d, s.arr, dtype, ".nrrd", _edit_nrrd(*NRRD_EDITS[edit]), compress=compress)
    else:
        p = _write_itk(d, s.arr, dtype, ".mha", _edit_mha(*MHA_EDITS[edit]))
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    _check(p, None, what=f".mha header: {edit}")


@FUZZ
@given(data=st.data())
def test_compressed_nrrd_label_damage_is_refused_or_harmless(data):
    """Flipped bytes in a gzip-compressed NRRD label map: refused, or (damage that changes nothing the reader
    uses) the same regions."""
    s = study()
    d = s.case_dir()
    p = _write_itk(d, s.arr, np.int16, ".nrrd", compress=True)
    _names_tsv(d, [(1, "brain"), (2, "liver")])
    blob = bytearray(p.read_bytes())
    start = blob.index(b"\n\n") + 2
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(start, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    p.write_bytes(bytes(blob))
    _check(p, BASE, what="damaged compressed NRRD", may_refuse=True)


# ------------------------------------------------------------------ names sidecars
BAD_NAME_CASES = ["duplicate", "empty", "blank", "reserved", "group", "non-utf8", "conflicting index",
                  "key not an integer", "json value not text", "json not an object", "json list item",
                  "json duplicate key", "control character", "collides with label_<value>", "float key"]


@FUZZ
@given(case=st.sampled_from(BAD_NAME_CASES), fmt=st.sampled_from(["tsv", "json", "api"]), data=st.data())
def test_label_names_that_are_ambiguous_or_unreadable_are_refused(case, fmt, data):
    """Names that would make the table ambiguous (duplicates, reserved or group names, one index named twice)
    or that cannot be read (not UTF-8, keys that are not integers, JSON of the wrong shape): refused."""
    s = study()
    d = s.case_dir()
    p = _write(d, s.arr, dtype=np.int16)
    table: list = [(1, "brain"), (2, "liver")]
    raw: bytes | None = None
    if case == "duplicate":
        table = [(1, "brain"), (2, "brain")]
    elif case == "empty":
        table = [(1, ""), (2, "liver")]
    elif case == "blank":
        table = [(1, "brain"), (2, data.draw(st.sampled_from(["   ", "\u00a0", "\u3000"])))]
    elif case == "reserved":
        table = [(1, data.draw(st.sampled_from(sorted(RESERVED_NAMES)))), (2, "liver")]
    elif case == "group":
        table = [(1, "brain"), (2, data.draw(st.sampled_from(sorted(GROUPS))))]
    elif case == "non-utf8":
        assume(fmt != "api")
        bad = data.draw(st.sampled_from([b"f\xf3ie", b"\xff\xfe", b"br\xe4in", b"\x80"]))
        raw = (b"index\tname\n1\tbrain\n2\t" + bad + b"\n") if fmt == "tsv" else \
            (b'{"1": "brain", "2": "' + bad + b'"}')
    elif case == "conflicting index":
        table = [(1, "brain"), (2, "liver"), (1, "liver_left")]
    elif case == "key not an integer":
        key = data.draw(st.sampled_from(["x", "one", "1a", "", "#2", "0x2", "٣"]))
        assume(not (fmt == "tsv" and key == "#2"))  # a TSV line starting with # is a comment
        table = [(1, "brain"), (2, "liver"), (key, "other")]
    elif case == "float key":
        table = [(1, "brain"), (2, "liver"), (data.draw(st.sampled_from(["1.5", "2.0", "1e0", "nan", "inf"])),
                                              "other")]
    elif case == "json value not text":
        assume(fmt != "tsv")
        table = [(1, "brain"), (2, data.draw(st.sampled_from([None, 5, 2.5, True, ["liver"], {"n": "liver"}])))]
    elif case in ("json not an object", "json list item"):
        assume(fmt == "json")
        raw = data.draw(st.sampled_from(["5", '"brain"', "null", "true", "[1, 2]", '[["1", "brain"]]',
                                         '[{"index": 1}]', '[{"name": "brain"}]', '[null]'] if case == "json list item"
                                        else ["5", '"brain"', "null", "true", "1.5"])).encode()
    elif case == "json duplicate key":
        assume(fmt == "json")
        raw = b'{"1": "brain", "2": "liver", "1": "liver_left"}'
    elif case == "control character":
        table = [(1, "brain"), (2, data.draw(st.sampled_from(["liv\ner", "liver\r", "li\x00ver", "\x1bliver",
                                                               "liver\t2"])))]
        assume(not (fmt == "tsv" and any(c in table[1][1] for c in "\n\r\t")))  # TSV cannot hold them as a name
    elif case == "collides with label_<value>":
        table = [(1, "label_2")]  # label 2 has no name: it would be called label_2 too
    api = None
    if fmt == "api":
        api = {}
        for k, v in table:
            api[k] = v
        if case == "conflicting index":
            return  # a mapping cannot hold one key twice
        if case in ("key not an integer", "float key"):
            pass
    elif raw is not None:
        (d / f"labels.{fmt}").write_bytes(raw)
    elif fmt == "tsv":
        _names_tsv(d, table)
    else:
        if case == "conflicting index":
            (d / "labels.json").write_text('{"1": "brain", "2": "liver", "1": "liver_left"}')
        else:
            (d / "labels.json").write_text(json.dumps({str(k): v for k, v in table}))
    _check(p, None, names=api, what=f"names {case} by {fmt}: {raw or table}")


def test_zz_label_fuzz_summary(capsys):
    """Print how many label cases ran, how many were refused, failed or gave a wrong number (run last)."""
    runs = {k: v for k, v in CASES.items() if ":" not in k and k not in ("failures", "wrong")}
    refused = sum(v for k, v in CASES.items() if k.endswith(": refused"))
    line = (f"label fuzz summary: {sum(runs.values())} cases ({', '.join(f'{k} {v}' for k, v in sorted(runs.items()))}"
            f"); {refused} refused with a SpectrackError, {CASES['failures']} unexpected failures, "
            f"{CASES['wrong']} silent wrong numbers")
    with capsys.disabled():
        print("\n" + line)
    assert CASES["failures"] == 0 and CASES["wrong"] == 0

"""Region files as highdicom, TotalSegmentator, 3D Slicer (slicerio), pynrrd, SimpleITK and ITK-SNAP write them.

Every file is made in the test by the real tool's own writer from the NHP
phantom's label map (the CT grid is the SPECT grid: 4.2 mm, no refinement),
then given to ``quantify --labels``. Where the file represents the phantom's
voxels, every region's voxel count must match within 1 % and every %ID the
phantom's truth within 0.1 %; what a reader assumed is a warning.

* DICOM-SEG FRACTIONAL (PROBABILITY and OCCUPANCY): each region is 0.8 inside
  and 0.3 on a one-voxel halo around it, so the ">= 0.5" rule gives exactly
  the phantom's voxels and an "any fraction > 0" rule would not.
* Label Map Segmentation Storage (highdicom ``LABELMAP``, SOP class 66.7),
  whose segment 0 is the background, and a BINARY SEG with a segment
  labelled Background: neither background is a region.
* TotalSegmentator ``--ml``: one multilabel NIfTI, class names only in the
  header extension (a Caret ``LabelTable`` XML with extension code 0, as its
  ``nifti_ext_header.add_label_map_to_nifti`` writes), kidneys split left and
  right; the same classes as a DICOM-SEG (highdicom) and as an RTSTRUCT
  (rt-utils, the writer of TotalSegmentator's DICOM output) and with
  TotalSegmentator's ITK-SNAP label file (title-cased names).
* 3D Slicer ``.seg.nrrd`` written by slicerio, with an overlapping BODY
  segment (two layers); plain ``.nrrd`` from pynrrd with an ITK-SNAP label
  description file; ``.mha`` from SimpleITK with and without names.
"""

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy import ndimage

from spectrack.cli import main
from spectrack.geometry import to_nifti_affine
from spectrack.phantom import make_study
from spectrack.regions.formats.dicomseg import read_dicom_seg, read_reference_series
from spectrack.regions.formats.dispatch import read_regions
from spectrack.regions.formats.nifti import read_label_map
from tool_files import assert_pct_id_truth, assert_same_voxels, rtutils_rtstruct, series_folder

TS_NAMES = {"brain": "brain", "liver": "liver", "bladder": "urinary_bladder", "thyroid": "thyroid_gland"}


@pytest.fixture(scope="module")
def nhp(tmp_path_factory):
    out = tmp_path_factory.mktemp("tools_nhp")
    truth = make_study(out, "nhp", times_h=[0.5, 4.0], ct_refine=1, seed=5, formats=("dicom",))
    ct0 = series_folder(out / "dicom", truth["timepoints"][0]["files"]["dicom_ct"]["series_uid"], out / "ct0")
    labels = read_label_map(out / "labels.nii.gz")
    datasets, grid = read_reference_series(ct0)
    assert labels.image.same_grid(grid)
    return out, truth, ct0, datasets, grid, labels


def quantify(out, labels_path, tmp_path, capsys, sens, *extra):
    res = tmp_path / "res"
    rc = main(["quantify", str(out / "dicom"), "--labels", str(labels_path), "-o", str(res), "--no-report",
               "--sensitivity", str(sens), "--uncertainty-draws", "0", *extra])
    err = capsys.readouterr().err
    assert rc == 0, err
    return pd.read_csv(res / "regions.csv"), json.loads((res / "study.json").read_text()), err


def _descriptions(hd, names, *, property_type=None):
    from pydicom.sr.codedict import codes

    return [hd.seg.SegmentDescription(
        segment_number=n, segment_label=name, segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=property_type or codes.SCT.Organ, algorithm_type="MANUAL")
        for n, name in enumerate(names, start=1)]


def _seg(hd, datasets, pixel, names, seg_type, **kw):
    from pydicom.uid import generate_uid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return hd.seg.Segmentation(
            source_images=datasets, pixel_array=pixel, segmentation_type=seg_type,
            segment_descriptions=kw.pop("descriptions", None) or _descriptions(hd, names),
            series_instance_uid=generate_uid(), series_number=40, sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer="test", manufacturer_model_name="highdicom", software_versions="1", device_serial_number="1",
            **kw)


# ---------------------------------------------------------------- DICOM-SEG
@pytest.mark.parametrize("fractional_type", ["PROBABILITY", "OCCUPANCY"])
def test_fractional_seg_uses_half(nhp, tmp_path, capsys, fractional_type):
    import highdicom as hd

    out, truth, ct0, datasets, grid, labels = nhp
    idx = [k for k in labels.indices if (labels.image.array == k).any()]
    stack = np.zeros(labels.image.array.shape + (len(idx),), np.float32)
    halo_voxels = 0
    for n, k in enumerate(idx):
        m = labels.image.array == k
        halo = ndimage.binary_dilation(m) & ~m
        stack[..., n][halo] = 0.3
        stack[..., n][m] = 0.8
        halo_voxels += int(halo.sum())
    assert halo_voxels > 0.3 * int((labels.image.array > 0).sum())  # a "> 0" rule would be far off
    seg = _seg(hd, datasets, stack, [labels.names[k] for k in idx], hd.seg.SegmentationTypeValues.FRACTIONAL,
               fractional_type=fractional_type, max_fractional_value=255)
    path = tmp_path / "frac.dcm"
    seg.save_as(path)
    back = read_dicom_seg(path, reference=grid)
    assert_same_voxels(back, labels)
    assert "0.5" in back.meta["fraction_rule"] and fractional_type in back.meta["fraction_rule"]
    table, meta, _ = quantify(out, path, tmp_path, capsys, truth["sensitivity_cps_per_mbq"])
    assert_pct_id_truth(table, truth)
    assert ">= 0.5" in meta["labels"]["meta"]["fraction_rule"]


def test_labelmap_seg_and_background(nhp, tmp_path, capsys):
    import highdicom as hd

    out, truth, ct0, datasets, grid, labels = nhp
    idx = [k for k in labels.indices if (labels.image.array == k).any()]
    number = np.zeros(max(idx) + 1, np.uint16)
    number[idx] = np.arange(1, len(idx) + 1)
    seg = _seg(hd, datasets, number[labels.image.array], [labels.names[k] for k in idx],
               hd.seg.SegmentationTypeValues.LABELMAP)
    path = tmp_path / "labelmap.dcm"
    seg.save_as(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    assert "Background" in [s.SegmentLabel for s in ds.SegmentSequence]  # highdicom's segment 0
    back = read_regions(path)
    assert "Background" not in back.names.values()
    assert_same_voxels(back.resampled_to(grid), labels)
    table, meta, _ = quantify(out, path, tmp_path, capsys, truth["sensitivity_cps_per_mbq"])
    assert_pct_id_truth(table, truth)
    assert meta["labels"]["meta"]["segmentation_type"] == "LABELMAP"

    # a BINARY SEG from a tool that stores the background as its first segment
    from pydicom.sr.codedict import codes

    binary = np.concatenate([(labels.image.array == 0)[..., None]]
                            + [(labels.image.array == k)[..., None] for k in idx], axis=-1).astype(np.uint8)
    desc = _descriptions(hd, ["Background"], property_type=codes.DCM.Background) + \
        _descriptions(hd, [labels.names[k] for k in idx])[0:0]
    desc += [hd.seg.SegmentDescription(
        segment_number=n + 2, segment_label=labels.names[k], segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Organ, algorithm_type="MANUAL") for n, k in enumerate(idx)]
    seg = _seg(hd, datasets, binary, None, hd.seg.SegmentationTypeValues.BINARY, descriptions=desc)
    path = tmp_path / "with_background.dcm"
    seg.save_as(path)
    back = read_dicom_seg(path, reference=grid)
    assert "Background" not in back.names.values() and back.meta["background_segments"] == [1]
    assert_same_voxels(back, labels)


# ---------------------------------------------------------------- TotalSegmentator
def _ts_classes(labels):
    """The phantom's regions as TotalSegmentator classes: kidneys split at the midline."""
    rev = {v: k for k, v in labels.names.items()}
    arr = labels.image.array
    out = {ts: arr == rev[ours] for ours, ts in TS_NAMES.items() if (arr == rev[ours]).any()}
    kid = arr == rev["kidneys"]
    x = labels.image.voxel_centres_mm()[..., 0]
    out["kidney_left"] = kid & (x > 0)  # LPS: +x is the patient's left
    out["kidney_right"] = kid & (x <= 0)
    assert out["kidney_left"].any() and out["kidney_right"].any()
    return out


def _write_totalseg_ml(path: Path, grid, classes: dict):
    """A multilabel NIfTI with the names where TotalSegmentator ``--ml`` puts them (header extension, code 0)."""
    arr = np.zeros(grid.array.shape, np.uint8)
    table = []
    for n, (name, m) in enumerate(classes.items(), start=1):
        arr[m] = n
        table.append(f'<Label Key="{n}" Red="1.0" Green="0.0" Blue="0.0" Alpha="1"><![CDATA[{name}]]></Label>')
    xml = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension>  <Date><![CDATA[2024-01-01T00:00:00]]></Date>'
           '   <VolumeInformation Index="0">   <LabelTable>\n' + "\n".join(table) + '\n  </LabelTable>'
           '  <StudyMetaDataLinkSet>  </StudyMetaDataLinkSet>  <VolumeType><![CDATA[Label]]></VolumeType>'
           '   </VolumeInformation></CaretExtension>\n              ')
    x, aff = to_nifti_affine(grid.with_array(arr))
    img = nib.Nifti1Image(x, aff)
    img.header.extensions.append(nib.nifti1.Nifti1Extension(0, xml.encode("utf-8")))
    nib.save(img, str(path))
    return path


def _check_mapped(table, truth):
    assert_pct_id_truth(table, truth, skip=[n for n in truth["timepoints"][0]["regions"]
                                            if n not in set(TS_NAMES) | {"kidneys"}] + list(
        truth["timepoints"][0]["groups"]), min_checked=2 * (len(TS_NAMES) + 1))
    assert not {"kidney_left", "urinary_bladder"} & set(table.region)


def test_totalsegmentator_ml_names_from_header(nhp, tmp_path, capsys):
    out, truth, ct0, datasets, grid, labels = nhp
    classes = _ts_classes(labels)
    ml = _write_totalseg_ml(tmp_path / "ct_total.nii.gz", grid, classes)
    back = read_regions(ml)
    assert set(back.names.values()) == set(TS_NAMES) | {"kidneys"}
    assert back.meta["names_from"] == "NIfTI header extension label table" and not back.warnings
    assert_same_voxels(back, labels, names=set(TS_NAMES) | {"kidneys"})
    table, meta, _ = quantify(out, ml, tmp_path, capsys, truth["sensitivity_cps_per_mbq"])
    _check_mapped(table, truth)
    assert "TotalSegmentator" in meta["labels"]["meta"]["name_mapping"]
    assert meta["labels"]["meta"]["source_names"]["1"] == "brain"


def test_totalsegmentator_names_in_every_format(nhp, tmp_path, capsys):
    import highdicom as hd

    out, truth, ct0, datasets, grid, labels = nhp
    classes = _ts_classes(labels)
    names = list(classes)
    # its DICOM-SEG (BINARY, one segment per class, the class name as the Segment Label)
    stack = np.stack([classes[n] for n in names], axis=-1).astype(np.uint8)
    seg_path = tmp_path / "ts_seg.dcm"
    _seg(hd, datasets, stack, names, hd.seg.SegmentationTypeValues.BINARY).save_as(seg_path)
    # its RTSTRUCT (rt-utils)
    rt_path = rtutils_rtstruct(ct0, classes, tmp_path / "ts_rtstruct.dcm")
    # a multilabel NIfTI with TotalSegmentator's ITK-SNAP label file (title-cased names) beside it
    arr = np.zeros(grid.array.shape, np.uint8)
    lines = ['    0     0    0    0        0  0  0    "Clear Label"']
    for n, name in enumerate(names, start=1):
        arr[classes[name]] = n
        lines.append(f'{n:5d}  255    0    0        1  1  1    "{name.replace("_", " ").title()}"')
    x, aff = to_nifti_affine(grid.with_array(arr))
    nib.save(nib.Nifti1Image(x, aff), str(tmp_path / "ts_snap.nii.gz"))
    (tmp_path / "ts_snap.txt").write_text("# ITK-SnAP Label Description File\n" + "\n".join(lines) + "\n")
    for path in (seg_path, rt_path, tmp_path / "ts_snap.nii.gz"):
        back = read_regions(path, reference=grid).resampled_to(grid)
        assert set(back.names.values()) == set(TS_NAMES) | {"kidneys"}, path.name
        assert_same_voxels(back, labels, names=set(TS_NAMES) | {"kidneys"})
        table, meta, _ = quantify(out, path, tmp_path / path.stem, capsys, truth["sensitivity_cps_per_mbq"])
        _check_mapped(table, truth)


# ---------------------------------------------------------------- 3D Slicer, NRRD, MetaImage, ITK-SNAP
def test_slicer_seg_nrrd_with_overlapping_body(nhp, tmp_path, capsys):
    import slicerio

    out, truth, ct0, datasets, grid, labels = nhp
    seg = slicerio.create_segmentation(grid.shape_ijk, grid.affine)
    body = ndimage.binary_dilation(labels.image.array > 0, iterations=2)
    for k in labels.indices:
        m = labels.image.array == k
        if m.any():
            slicerio.add_segment(seg, m.transpose(2, 1, 0), {"id": labels.names[k], "name": labels.names[k]})
    slicerio.add_segment(seg, body.transpose(2, 1, 0), {"id": "BODY", "name": "BODY"})
    assert np.asarray(seg["voxels"]).ndim == 4  # BODY overlaps every region: a second layer
    path = tmp_path / "Segmentation.seg.nrrd"
    slicerio.write_segmentation(str(path), seg)
    back = read_regions(path)
    assert_same_voxels(back, labels)
    assert int(back.mask("BODY").sum()) == int(body.sum())
    table, meta, err = quantify(out, path, tmp_path, capsys, truth["sensitivity_cps_per_mbq"])
    assert_pct_id_truth(table, truth, skip=["remainder"])
    assert any("BODY" in w and "overlap" in w for w in meta["warnings"])


def test_nrrd_with_itksnap_names_and_mha(nhp, tmp_path, capsys):
    import nrrd
    import SimpleITK as sitk

    out, truth, ct0, datasets, grid, labels = nhp
    aff = grid.affine
    arr_ijk = np.ascontiguousarray(labels.image.array.transpose(2, 1, 0)).astype(np.uint16)
    path = tmp_path / "labels.nrrd"
    nrrd.write(str(path), arr_ijk, {"space": "left-posterior-superior", "space directions": aff[:3, :3].T,
                                    "space origin": aff[:3, 3], "kinds": ["domain"] * 3})
    rows = ['    0     0    0    0        0  0  0    "Clear Label"'] + [
        f'{k:5d}  200  100   50        1  1  1    "{name}"' for k, name in sorted(labels.names.items())]
    (tmp_path / "labels.txt").write_text("\n".join(rows) + "\n")
    back = read_regions(path)
    assert back.image.same_grid(grid) and back.names == labels.names and not back.warnings
    assert_same_voxels(back, labels)
    table, meta, _ = quantify(out, path, tmp_path / "nrrd", capsys, truth["sensitivity_cps_per_mbq"])
    assert_pct_id_truth(table, truth)

    img = sitk.GetImageFromArray(labels.image.array.astype(np.uint8))
    img.SetOrigin([float(v) for v in grid.origin_mm])
    img.SetSpacing([float(v) for v in grid.spacing_mm])
    img.SetDirection([float(v) for v in grid.direction.ravel()])
    mha = tmp_path / "regions.mha"
    sitk.WriteImage(img, str(mha))
    (tmp_path / "regions.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in sorted(labels.names.items())))
    table, meta, _ = quantify(out, mha, tmp_path / "mha", capsys, truth["sensitivity_cps_per_mbq"])
    assert_pct_id_truth(table, truth)

    (tmp_path / "regions.tsv").unlink()  # the same file without names: a warning, not silent label_N
    table, meta, err = quantify(out, mha, tmp_path / "mha2", capsys, truth["sensitivity_cps_per_mbq"])
    assert {f"label_{k}" for k in labels.present()} <= set(table.region)
    assert any("no name for label value" in w for w in meta["warnings"])
    assert "no name for label value" in err

"""Rigid registration on synthetic CT/SPECT volumes moved by known transforms."""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from spectrack.align.register import (
    CT_CLAMP_HU,
    RigidResult,
    load_transform,
    propagate_labels,
    register_rigid,
    register_timepoints,
    save_transform,
)
from spectrack.align.resample import resample_image
from spectrack.errors import InconsistentInputError, InputError
from spectrack.geometry import Image
from spectrack.load.model import Series, TimePoint
from spectrack.regions.labelmap import LabelMap

NAMES = {1: "brain", 7: "liver", 8: "kidneys"}
#: organ centres (LPS mm) where the recovered transform is checked
ORGAN_POINTS_MM = np.array([[0, -5, 120], [-65, -5, -45], [-60, 55, -100], [62, 52, -92], [0, 62, 0]], float)


# ------------------------------------------------------------- phantom
def _ell(p, c, r):
    q = (p - np.asarray(c, np.float32)) / np.asarray(r, np.float32)
    return np.einsum("...i,...i->...", q, q) <= 1.0


def _phantom(p):
    """CT numbers (HU) and organ ids at LPS points ``p`` (..., 3) of an
    asymmetric head-and-trunk phantom (liver on the right, one arm bone on
    the left, gas in the stomach, a segmented spine)."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    hu = np.full(p.shape[:-1], -1000.0, dtype=np.float32)
    organ = np.zeros(p.shape[:-1], dtype=np.int32)
    body = ((x / 150) ** 2 + (y / 100) ** 2 <= 1) & (z > -175) & (z < 45)
    body |= _ell(p, (0, 0, 45), (150, 100, 20)) & (z >= 45)
    body |= ((x / 50) ** 2 + ((y - 10) / 50) ** 2 <= 1) & (z >= 45) & (z < 90)
    body |= _ell(p, (0, -5, 120), (72, 88, 68))
    hu[body], organ[body] = 20.0, 16
    for sx in (-1, 1):
        lung = _ell(p, (sx * 65, 5, 10), (55, 65, 60))
        hu[lung], organ[lung] = -800.0, 0
    liver = _ell(p, (-65, -5, -45), (70, 60, 50))
    hu[liver], organ[liver] = 60.0, 7
    stomach = _ell(p, (60, -25, -40), (40, 30, 35))
    hu[stomach], organ[stomach] = 30.0, 11
    hu[stomach & (y < -35)] = -900.0
    kidneys = _ell(p, (-60, 55, -100), (25, 25, 45)) | _ell(p, (62, 52, -92), (25, 25, 45))
    hu[kidneys], organ[kidneys] = 35.0, 8
    bladder = _ell(p, (0, -20, -160), (40, 30, 25))
    hu[bladder], organ[bladder] = 5.0, 9
    spine = ((x / 18) ** 2 + ((y - 62) / 18) ** 2 <= 1) & (z > -175) & (z < 85)
    hu[spine] = np.where(np.mod(z[spine], 30.0) < 6.0, 80.0, 700.0)
    organ[spine] = 15
    arm = ((x - 120) / 12) ** 2 + ((y + 10) / 12) ** 2 <= 1
    hu[arm & (z > -120) & (z < 40)] = 900.0
    brain = _ell(p, (0, -5, 120), (64, 80, 60))
    skull = _ell(p, (0, -5, 120), (72, 88, 68)) & ~brain
    hu[skull], organ[skull] = 1000.0, 14
    hu[brain], organ[brain] = 35.0, 1
    return hu, organ


ACTIVITY_EARLY = {1: 5.0, 7: 20.0, 8: 40.0, 9: 10.0, 11: 2.0, 14: 1.0, 15: 3.0, 16: 1.0}
ACTIVITY_LATE = {1: 9.0, 7: 30.0, 8: 25.0, 9: 60.0, 11: 4.0, 14: 1.0, 15: 2.0, 16: 0.8}


def _euler(angles_deg):
    t = sitk.Euler3DTransform()
    t.SetRotation(*np.radians(angles_deg))
    return np.array(t.GetMatrix()).reshape(3, 3)


def _render(n, spacing, rot=np.eye(3), shift=(0, 0, 0), seed=0, activity=ACTIVITY_EARLY):
    """CT, truth labels and SPECT of the phantom moved by ``x -> rot x + shift``.

    The moving image satisfies ``moving(rot x + shift) = phantom(x)``, so the
    ITK transform from fixed to moving space is exactly that map.
    """
    org = -(n - 1) / 2 * spacing
    grid = Image(np.zeros((n, n, n), np.float32), (org,) * 3, (spacing,) * 3)
    y = grid.voxel_centres_mm().astype(np.float32)
    x = (y - np.asarray(shift, np.float32)) @ rot.astype(np.float32)  # rot^T (y - shift)
    hu, organ = _phantom(x)
    rng = np.random.default_rng(seed)
    hu = ndimage.gaussian_filter(hu, 0.8) + rng.normal(0, 15, hu.shape).astype(np.float32)
    labels = np.where(np.isin(organ, list(NAMES)), organ, 0)
    act = np.zeros(organ.shape, np.float32)
    for k, a in activity.items():
        act[organ == k] = a
    act = ndimage.gaussian_filter(act, 10.0 / 2.355 / spacing)  # 10 mm FWHM
    act = rng.poisson(np.clip(act, 0, None) * 20).astype(np.float32)
    return (grid.with_array(hu.astype(np.float32), units="HU"), grid.with_array(labels, units="label"),
            grid.with_array(act, units="counts"))


def _point_errors_mm(transform, rot, shift):
    truth = ORGAN_POINTS_MM @ rot.T + np.asarray(shift)
    got = np.array([transform.TransformPoint(tuple(p)) for p in ORGAN_POINTS_MM])
    return np.linalg.norm(got - truth, axis=1)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# ---------------------------------------------------------------- tests
ROT128, SHIFT128 = _euler((8, -6, 10)), (18.0, -14.0, 17.0)  # 28 mm, up to 10 degrees


@pytest.fixture(scope="module")
def pair128():
    fixed = _render(128, 3.0, seed=1)
    moving = _render(128, 3.0, ROT128, SHIFT128, seed=2)
    return fixed, moving


def test_register_ct_128_accuracy_dice_and_time(pair128, capsys):
    (f_ct, f_lab, _), (m_ct, m_lab, _) = pair128
    res = register_rigid(f_ct, m_ct, clamp=CT_CLAMP_HU)
    err = _point_errors_mm(res.transform, ROT128, SHIFT128)
    with capsys.disabled():
        print(f"\n[register_rigid 128^3 CT @3 mm] {res.elapsed_s:.2f} s wall, {res.iterations} iterations, "
              f"max organ error {err.max():.2f} mm, NCC {res.quality_ncc:.3f}")
    assert np.all(err < 1.0), err
    assert res.quality_ncc > 0.95
    np.testing.assert_allclose(res.rotation_deg, [8, -6, 10], atol=0.5)
    # labels drawn on the reference reach the moved organs
    moved = propagate_labels(LabelMap(f_lab, NAMES), res, m_ct)
    assert moved.image.same_grid(m_ct) and moved.names == NAMES
    for k, name in NAMES.items():
        d = _dice(moved.image.array == k, m_lab.array == k)
        assert d >= 0.95, (name, d)
    # and the moving image comes back onto the reference grid
    back = resample_image(m_ct, f_ct, res.transform)
    inside = f_lab.array > 0
    assert np.corrcoef(back.array[inside], f_ct.array[inside])[0, 1] > 0.8


def _series(image, modality, frame_uid):
    s = Series(image=image, modality=modality)
    if frame_uid is not None:
        s.set("frame_of_reference_uid", frame_uid, "FrameOfReferenceUID (0020,0052)")
    return s


def test_register_timepoints_ct_spect_and_warnings():
    rot1, shift1 = _euler((0, 0, 10)), (0.0, 0.0, 30.0)
    rot2, shift2 = _euler((-5, 4, 0)), (-12.0, 10.0, -8.0)
    ct0, lab0, sp0 = _render(96, 4.0, seed=3)
    ct1, _, sp1 = _render(96, 4.0, rot1, shift1, seed=4)
    _, _, sp2 = _render(96, 4.0, rot2, shift2, seed=5, activity=ACTIVITY_LATE)
    tps = [
        TimePoint(_series(sp0, "NM", "1.2.3.9"), _series(ct0, "CT", "1.2.3.1"), index=0),  # FoR differ
        TimePoint(_series(sp1, "NM", None), _series(ct1, "CT", "1.2.3.2"), index=1),  # FoR missing
        TimePoint(_series(sp2, "NM", "1.2.3.3"), None, index=2),  # no CT
    ]
    out = register_timepoints(tps, 0, mode="ct")
    assert len(out) == 3 and len(out.results) == 3
    assert np.allclose(out[0].GetParameters(), 0)
    err1 = _point_errors_mm(out[1], rot1, shift1)
    assert np.all(err1 < 1.0), err1
    # the SPECT-only time point: SPECT to SPECT, activities changed, 10 mm FWHM
    err2 = _point_errors_mm(out[2], rot2, shift2)
    assert np.all(err2 < 1.0), err2
    text = "\n".join(out.warnings)
    assert "tp0: SPECT and CT have different FrameOfReferenceUIDs" in text
    assert "tp1: FrameOfReferenceUID missing from the SPECT" in text
    assert "tp2: no CT; registered SPECT to the reference SPECT" in text
    assert all(isinstance(r, RigidResult) for r in out.results)


def test_deterministic_and_transform_files(tmp_path):
    rot, shift = _euler((3, 0, -4)), (6.0, -5.0, 4.0)
    f_ct, _, _ = _render(64, 6.0, seed=6)
    m_ct, _, _ = _render(64, 6.0, rot, shift, seed=7)
    a = register_rigid(f_ct, m_ct, clamp=CT_CLAMP_HU, levels=(2, 1))
    b = register_rigid(f_ct, m_ct, clamp=CT_CLAMP_HU, levels=(2, 1))
    # seeded sampling: repeatable up to the order of multithreaded sums
    np.testing.assert_allclose(a.transform.GetParameters(), b.transform.GetParameters(), atol=1e-9)
    assert np.all(_point_errors_mm(a.transform, rot, shift) < 2.0)
    path = save_transform(a, tmp_path / "tp1_to_ref.tfm")
    tf = load_transform(path)
    assert isinstance(tf, sitk.Euler3DTransform)
    np.testing.assert_allclose(a.map_points_mm(ORGAN_POINTS_MM),
                               [tf.TransformPoint(tuple(p)) for p in ORGAN_POINTS_MM], atol=1e-6)


def test_register_errors(tmp_path):
    img = Image(np.zeros((8, 8, 8), np.float32))
    with pytest.raises(InconsistentInputError, match="metric"):
        register_rigid(img, img, metric="mi")
    with pytest.raises(InconsistentInputError, match="initialiser"):
        register_rigid(img, img, initialiser="centre")
    with pytest.raises(InconsistentInputError, match="mode"):
        register_timepoints([], mode="pet")
    with pytest.raises(InputError, match="does not exist"):
        load_transform(tmp_path / "none.tfm")
    (tmp_path / "bad.tfm").write_text("not a transform")
    with pytest.raises(InputError, match="cannot read"):
        load_transform(tmp_path / "bad.tfm")


def test_propagate_identity_onto_other_grid():
    lab = np.zeros((10, 12, 14), np.int32)
    lab[2:8, 3:9, 4:10] = 7
    src = LabelMap(Image(lab, (0, 0, 0), (2, 2, 2)), {7: "liver"})
    target = Image(np.zeros((20, 24, 28)), (-0.5, -0.5, -0.5), (1, 1, 1))
    out = propagate_labels(src, sitk.Euler3DTransform(), target)
    assert out.image.same_grid(target)
    assert math.isclose(out.mask("liver").sum() * 1.0, (lab == 7).sum() * 8.0)

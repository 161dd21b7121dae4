"""The one geometry convention: round trips and the LPS/RAS flip."""

import numpy as np
import pytest

from spectrack.geometry import Image, from_nifti_affine, from_sitk, to_nifti_affine, to_sitk


def _oblique():
    th = np.deg2rad(20)
    d = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, -1.0]])
    return Image(np.arange(24, dtype=float).reshape(2, 3, 4), origin_mm=(10, -20, 30),
                 spacing_mm=(1.5, 2.0, 4.13), direction=d)


def test_sitk_round_trip_world_coordinates():
    img = _oblique()
    s = to_sitk(img)
    for ijk in [(0, 0, 0), (3, 2, 1), (1, 2, 0)]:
        np.testing.assert_allclose(s.TransformIndexToPhysicalPoint(ijk), img.index_to_world_mm(ijk), atol=1e-9)
    back = from_sitk(s)
    assert back.same_grid(img)
    np.testing.assert_array_equal(back.array, img.array)


def test_nifti_round_trip_flips_x_and_y_only():
    img = _oblique()
    arr, aff = to_nifti_affine(img)
    assert arr.shape == img.shape_ijk
    # RAS = diag(-1,-1,1) LPS
    lps = img.index_to_world_mm([1, 2, 1])
    ras = aff @ np.array([1, 2, 1, 1.0])
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    back = from_nifti_affine(arr, aff)
    assert back.same_grid(img)
    np.testing.assert_array_equal(back.array, img.array)


def test_nibabel_and_sitk_agree_on_a_nifti_file(tmp_path):
    import nibabel as nib
    import SimpleITK as sitk

    img = _oblique()
    arr, aff = to_nifti_affine(img)
    nib.save(nib.Nifti1Image(arr.astype(np.float32), aff), tmp_path / "a.nii.gz")
    s = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    for ijk in [(0, 0, 0), (3, 2, 1)]:
        np.testing.assert_allclose(s.TransformIndexToPhysicalPoint(ijk), img.index_to_world_mm(ijk), atol=1e-4)


def test_world_to_index_inverts():
    img = _oblique()
    ijk = np.array([[0.5, 1.25, 1.0], [3, 0, 0]])
    np.testing.assert_allclose(img.world_to_index(img.index_to_world_mm(ijk)), ijk, atol=1e-12)


def test_voxel_volume_and_centres():
    img = Image(np.zeros((2, 2, 2)), spacing_mm=(2, 2, 2.5))
    assert img.voxel_volume_ml == pytest.approx(0.01)
    c = img.voxel_centres_mm()
    np.testing.assert_allclose(c[1, 0, 1], [2, 0, 2.5])


@pytest.mark.parametrize("spacing", [(0, 1, 1), (1, -1, 1), (1, np.nan, 1)])
def test_bad_spacing_rejected(spacing):
    with pytest.raises(ValueError):
        Image(np.zeros((2, 2, 2)), spacing_mm=spacing)


def test_napari_affine_maps_array_index_to_zyx():
    img = _oblique()
    a = img.napari_affine()
    kji = np.array([1, 2, 3, 1.0])
    xyz = img.index_to_world_mm([3, 2, 1])
    np.testing.assert_allclose((a @ kji)[:3], xyz[::-1], atol=1e-9)

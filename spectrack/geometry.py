"""The one geometry convention of spectrack, and the only place it is converted.

Convention
----------
An :class:`Image` holds

* ``array``: a numpy array indexed ``[k, j, i]`` (slice, row, column), i.e. the
  order :func:`SimpleITK.GetArrayFromImage` returns;
* ``origin_mm``: world position (x, y, z) of the centre of voxel ``[0, 0, 0]``;
* ``spacing_mm``: voxel size along i, j, k (x-, y-, z-index), always positive;
* ``direction``: 3x3 matrix whose columns are the world directions of the
  i, j and k index axes.

World coordinates are DICOM patient coordinates, **LPS** (x to the patient's
left, y to posterior, z to head), in millimetres. This is what DICOM and
SimpleITK use. NIfTI stores RAS; the flip happens in :func:`from_nifti_affine`
and :func:`to_nifti_affine` and nowhere else. SimpleITK images are converted
by :func:`from_sitk` and :func:`to_sitk`.

A negative slice step (DICOM ``SpacingBetweenSlices < 0``) is represented by a
positive ``spacing_mm[2]`` and a negated third ``direction`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["LazyImage", 
    "Image",
    "from_nifti_affine",
    "to_nifti_affine",
    "from_sitk",
    "to_sitk",
    "LPS_TO_RAS",
]

#: Diagonal flip between DICOM/ITK LPS and NIfTI RAS world coordinates.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(eq=False)
class Image:
    """A 3-D image on a physical grid (see the module docstring).

    Parameters
    ----------
    array : numpy.ndarray
        Voxel values indexed ``[k, j, i]``.
    origin_mm : array_like of 3 float
        LPS position of the centre of voxel ``[0, 0, 0]``.
    spacing_mm : array_like of 3 float
        Positive voxel size along i, j, k.
    direction : array_like, shape (3, 3)
        Columns are the LPS unit vectors of the i, j, k axes.
    units : str
        What the values mean: ``"Bq/mL"``, ``"counts"``, ``"HU"``, ``"label"``...
    meta : dict
        Free-form annotations (never needed for geometry).

    Examples
    --------
    >>> img = Image(np.zeros((2, 3, 4)), origin_mm=(0, 0, 0), spacing_mm=(1, 2, 3))
    >>> img.shape_ijk
    (4, 3, 2)
    >>> img.index_to_world_mm([1, 1, 1]).tolist()
    [1.0, 2.0, 3.0]
    >>> float(img.voxel_volume_ml)
    0.006
    """

    array: np.ndarray
    origin_mm: Any = (0.0, 0.0, 0.0)
    spacing_mm: Any = (1.0, 1.0, 1.0)
    direction: Any = None
    units: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(f"Image needs a 3-D array, got shape {self.array.shape}")
        self._check_geometry()

    def _check_geometry(self) -> None:
        self.origin_mm = np.asarray(self.origin_mm, dtype=float).reshape(3)
        self.spacing_mm = np.asarray(self.spacing_mm, dtype=float).reshape(3)
        if self.direction is None:
            self.direction = np.eye(3)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if not np.all(np.isfinite(self.spacing_mm)) or np.any(self.spacing_mm <= 0):
            raise ValueError(f"voxel spacing must be positive and finite, got {self.spacing_mm}")
        if not np.all(np.isfinite(self.origin_mm)):
            raise ValueError(f"origin must be finite, got {self.origin_mm}")
        if not np.all(np.isfinite(self.direction)) or abs(abs(np.linalg.det(self.direction)) - 1) > 1e-3:
            raise ValueError("direction cosines must form an orthonormal matrix")

    # ------------------------------------------------------------------ geometry
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Grid size along i, j, k (the reverse of ``array.shape``)."""
        return tuple(int(n) for n in self.array.shape[::-1])

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to LPS (x, y, z, 1) in mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction * self.spacing_mm[None, :]
        a[:3, 3] = self.origin_mm
        return a

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm^3)."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    def index_to_world_mm(self, ijk) -> np.ndarray:
        """LPS position (mm) of voxel centres given as (..., 3) i, j, k indices."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction * self.spacing_mm[None, :]).T + self.origin_mm

    def world_to_index(self, xyz_mm) -> np.ndarray:
        """Continuous i, j, k indices of LPS points (..., 3) in mm."""
        xyz = np.asarray(xyz_mm, dtype=float) - self.origin_mm
        m = np.linalg.inv(self.direction * self.spacing_mm[None, :])
        return xyz @ m.T

    def voxel_centres_mm(self) -> np.ndarray:
        """LPS coordinates of every voxel centre, shape ``array.shape + (3,)``."""
        k, j, i = np.meshgrid(*(np.arange(n) for n in self.shape_ijk[::-1]), indexing="ij")
        return self.index_to_world_mm(np.stack([i, j, k], axis=-1))

    def corners_mm(self) -> np.ndarray:
        """LPS coordinates (8, 3) of the outer corners of the field of view."""
        n = np.array(self.shape_ijk, dtype=float)
        c = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=float)
        return self.index_to_world_mm(c * n - 0.5)

    def same_grid(self, other: "Image", tol_mm: float = 1e-3) -> bool:
        """True if ``other`` has the same shape and voxel positions (within ``tol_mm``)."""
        return (
            self.shape_ijk == other.shape_ijk
            and np.allclose(self.affine, other.affine, atol=tol_mm)
        )

    def with_array(self, array, units: str | None = None) -> "Image":
        """A new image on the same grid with other values."""
        return replace(self, array=np.asarray(array), units=self.units if units is None else units,
                       meta=dict(self.meta))

    # ----------------------------------------------------------- napari helper
    def napari_affine(self) -> np.ndarray:
        """4x4 affine mapping array index ``(k, j, i)`` to world ``(z, y, x)`` LPS mm.

        napari applies a layer's affine to data coordinates in array-axis order;
        this gives layers on different grids a common world frame.
        """
        a = self.affine
        perm = np.eye(4)[[2, 1, 0, 3]]  # (x,y,z)<->(z,y,x) swap, its own inverse
        return perm @ a @ perm


# ---------------------------------------------------------------- conversions
class LazyImage(Image):
    """An :class:`Image` whose voxels are read on first use of ``array``.

    The geometry (shape, origin, spacing, direction) is known from headers;
    ``load()`` returns the voxel array, shape ``shape`` (``[k, j, i]``), and
    is called at most once. A CT that only places a label map is never read.

    Examples
    --------
    >>> calls = []
    >>> img = LazyImage((2, 3, 4), lambda: calls.append(1) or np.ones((2, 3, 4)), spacing_mm=(1, 1, 2))
    >>> img.shape_ijk, img.loaded, len(calls)
    ((4, 3, 2), False, 0)
    >>> float(img.array.sum()), img.loaded, len(calls)
    (24.0, True, 1)
    """

    def __init__(self, shape, load, origin_mm=(0.0, 0.0, 0.0), spacing_mm=(1.0, 1.0, 1.0), direction=None,
                 units: str = "", meta: dict | None = None):
        self._shape = tuple(int(n) for n in shape)
        if len(self._shape) != 3:
            raise ValueError(f"LazyImage needs a 3-D shape, got {self._shape}")
        self._load, self._array = load, None
        self.origin_mm, self.spacing_mm, self.direction = origin_mm, spacing_mm, direction
        self.units, self.meta = units, dict(meta or {})
        self._check_geometry()

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            arr = np.asarray(self._load())
            if arr.shape != self._shape:
                raise ValueError(f"lazy image loaded shape {arr.shape}, expected {self._shape}")
            self._array, self._load = arr, None
        return self._array

    @array.setter
    def array(self, value) -> None:
        value = np.asarray(value)
        self._array, self._load, self._shape = value, None, tuple(value.shape)

    @property
    def loaded(self) -> bool:
        """Whether the voxels have been read."""
        return self._array is not None

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        return tuple(self._shape[::-1])

    def with_array(self, array, units: str | None = None) -> Image:
        return Image(np.asarray(array), self.origin_mm, self.spacing_mm, self.direction,
                     units=self.units if units is None else units, meta=dict(self.meta))

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not read yet"
        return (f"LazyImage(shape_ijk={self.shape_ijk}, spacing_mm={self.spacing_mm.tolist()}, units={self.units!r}, "
                f"{state})")

    __eq__ = object.__eq__
    __hash__ = object.__hash__


def from_nifti_affine(array_xyz: np.ndarray, affine_ras: np.ndarray, **kw) -> Image:
    """Build an :class:`Image` from a NIfTI-style array and RAS affine.

    Parameters
    ----------
    array_xyz : numpy.ndarray
        Array indexed ``[i, j, k]`` as nibabel returns it (3-D).
    affine_ras : numpy.ndarray
        4x4 voxel-to-RAS affine (``img.affine`` in nibabel).
    **kw
        Passed to :class:`Image` (``units``, ``meta``).
    """
    aff = LPS_TO_RAS @ np.asarray(affine_ras, dtype=float)  # RAS->LPS (flip is its own inverse)
    m = aff[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if np.any(~np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"NIfTI affine has zero or invalid voxel size {spacing}")
    direction = m / spacing[None, :]
    # remove any shear by taking the nearest orthonormal matrix
    u, _, vt = np.linalg.svd(direction)
    direction = u @ vt
    arr = np.asarray(array_xyz)
    if arr.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {arr.shape}")
    return Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), aff[:3, 3], spacing, direction, **kw)


def to_nifti_affine(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(array_xyz, affine_ras)`` for writing ``image`` with nibabel."""
    return (np.ascontiguousarray(image.array.transpose(2, 1, 0)), LPS_TO_RAS @ image.affine)


def from_sitk(sitk_image, units: str = "", meta: dict | None = None) -> Image:
    """Convert a 3-D SimpleITK image (ITK uses LPS too: no flip)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(sitk_image)
    return Image(arr, sitk_image.GetOrigin(), sitk_image.GetSpacing(),
                 np.array(sitk_image.GetDirection()).reshape(3, 3), units=units, meta=meta or {})


def to_sitk(image: Image, dtype=None):
    """Convert an :class:`Image` to a SimpleITK image with the same geometry."""
    import SimpleITK as sitk

    arr = image.array if dtype is None else np.asarray(image.array, dtype=dtype)  # no copy when it already is
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    out.SetOrigin(tuple(float(v) for v in image.origin_mm))
    out.SetSpacing(tuple(float(v) for v in image.spacing_mm))
    out.SetDirection(tuple(float(v) for v in image.direction.ravel()))
    return out

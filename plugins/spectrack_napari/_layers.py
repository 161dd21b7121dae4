"""Turn spectrack studies and label maps into napari layer data, and back.

Nothing here imports Qt or napari: layer data are plain ``(data, kwargs,
layer_type)`` tuples, so the conversions are testable without a viewer.

Geometry: every layer carries the affine of
:meth:`spectrack.geometry.Image.napari_affine` (array index ``(k, j, i)`` to
world ``(z, y, x)`` LPS mm), so CT, SPECT and labels on different grids
overlay in one world frame. A time series is one 4-D layer ``(t, k, j, i)``:
every time point is resampled onto the reference time point's grid and the
affine gets a leading time axis (one step per time point).
"""

from __future__ import annotations

import numpy as np

from spectrack.geometry import Image

__all__ = [
    "METADATA_KEY",
    "study_layers",
    "series_layers",
    "label_layer_data",
    "layer_label_map",
    "time_h_of",
    "image_from_napari_affine",
]

#: Key of the spectrack entry in ``layer.metadata``.
METADATA_KEY = "spectrack"

#: Display defaults.
CT_CONTRAST_HU = (-1000.0, 2000.0)
CT_COLORMAP = "gray"
EMISSION_COLORMAP = "inferno"

_PERM = np.eye(4)[[2, 1, 0, 3]]  # (x, y, z) <-> (z, y, x), its own inverse


def _with_time_axis(affine4: np.ndarray) -> np.ndarray:
    a = np.eye(5)
    a[1:, 1:] = affine4
    return a


def image_from_napari_affine(data: np.ndarray, affine: np.ndarray, units: str = "") -> Image:
    """The :class:`Image` whose :meth:`~Image.napari_affine` is ``affine``.

    Parameters
    ----------
    data : numpy.ndarray
        3-D array indexed ``(k, j, i)``.
    affine : numpy.ndarray
        4x4 matrix from array index ``(k, j, i)`` to world ``(z, y, x)`` mm.
    """
    a = _PERM @ np.asarray(affine, dtype=float) @ _PERM  # (i, j, k) -> (x, y, z)
    m = a[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    return Image(np.asarray(data), origin_mm=a[:3, 3], spacing_mm=spacing, direction=m / spacing[None, :],
                 units=units)


def time_h_of(series) -> float | None:
    """Hours from injection to the scan start of an emission series, or None."""
    start, inj = series.get("acquisition_start"), series.get("injection_time")
    if start is None or inj is None:
        return None
    return (start - inj).total_seconds() / 3600.0


def _on_grid(img: Image, reference: Image, *, fill: float) -> np.ndarray:
    if img.same_grid(reference):
        return img.array
    from spectrack.align.resample import resample_image

    return resample_image(img, reference, order=1, default_value=fill).array


def _ct_dtype(arrays):
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    return np.int16 if -32768 <= lo and hi <= 32767 else np.float32


def _emission_limits(arr: np.ndarray) -> tuple[float, float]:
    """0 to the 99.7th percentile of positive voxels (a few hot voxels saturate)."""
    sample = arr[..., ::2, ::2, ::2] if arr.size > 4_000_000 else arr
    pos = sample[np.isfinite(sample) & (sample > 0)]
    if pos.size == 0:
        return 0.0, 1.0
    hi = float(np.percentile(pos, 99.7))
    return 0.0, hi if hi > 0 else float(pos.max())


def _axis_labels_supported() -> bool:
    """napari >= 0.6 layers take ``axis_labels`` (the sliders then read "time", "z"...)."""
    try:
        import inspect

        from napari.layers import Image as _NapariImage
    except ImportError:
        return False
    return "axis_labels" in inspect.signature(_NapariImage.__init__).parameters


def _labelled(kwargs: dict, ndim: int) -> dict:
    if _axis_labels_supported():
        kwargs["axis_labels"] = ("time", "z", "y", "x")[4 - ndim:]
    return kwargs


def _meta(role: str, path, **extra) -> dict:
    return {METADATA_KEY: {"role": role, "path": None if path is None else str(path), **extra}}


def _emission_kwargs(name, data, affine, meta):
    return _labelled({"name": name, "colormap": EMISSION_COLORMAP, "blending": "additive",
                      "contrast_limits": _emission_limits(data), "affine": affine, "metadata": meta}, data.ndim)


def _ct_kwargs(name, affine, meta):
    return _labelled({"name": name, "colormap": CT_COLORMAP, "contrast_limits": CT_CONTRAST_HU, "affine": affine,
                      "metadata": meta}, len(affine) - 1)


def study_layers(study, *, reference: int = 0, path=None) -> list[tuple]:
    """Layer data for a loaded :class:`~spectrack.load.Study`: CT (grey) then SPECT/PET (coloured).

    Parameters
    ----------
    study : spectrack.load.Study
    reference : int
        Time point whose grids the others are resampled onto.
    path : path-like, optional
        Recorded in the layers' metadata (the quantify widget picks it up).

    Returns
    -------
    list of (data, kwargs, layer_type)
        4-D ``(t, z, y, x)`` layers for several time points, else 3-D.
    """
    tps = study.timepoints
    reference = min(max(int(reference), 0), len(tps) - 1)
    path = study.path if path is None else path
    times_h = [time_h_of(tp.emission) for tp in tps]
    common = {"subject": study.subject, "times_h": times_h, "reference": reference,
              "n_timepoints": len(tps)}
    four_d = len(tps) > 1
    out = []

    ct_images = [tp.ct.image if tp.ct is not None else None for tp in tps]
    if any(im is not None for im in ct_images):
        ref_ct = ct_images[reference] if ct_images[reference] is not None else \
            next(im for im in ct_images if im is not None)
        arrays = [_on_grid(im, ref_ct, fill=-1000.0) if im is not None else None for im in ct_images]
        present = [a for a in arrays if a is not None]
        dtype = _ct_dtype(present)
        arrays = [np.full(ref_ct.array.shape, -1000, dtype) if a is None else
                  (np.rint(a) if dtype == np.int16 else a).astype(dtype, copy=False) for a in arrays]
        meta = _meta("ct", path, units="HU", **common)
        if four_d:
            out.append((np.stack(arrays), _ct_kwargs(f"{study.subject} CT", _with_time_axis(ref_ct.napari_affine()),
                                                    meta), "image"))
        else:
            out.append((arrays[0], _ct_kwargs(f"{study.subject} CT", ref_ct.napari_affine(), meta), "image"))

    ref_em = tps[reference].emission
    arrays = [_on_grid(tp.emission.image, ref_em.image, fill=0.0).astype(np.float32, copy=False) for tp in tps]
    units = ref_em.get("units") or ref_em.image.units or ""
    modality = "PET" if ref_em.modality == "PT" else "SPECT"
    name = f"{study.subject} {modality}" + (f" ({units})" if units else "")
    meta = _meta("emission", path, units=units, **common)
    if four_d:
        data = np.stack(arrays)
        out.append((data, _emission_kwargs(name, data, _with_time_axis(ref_em.image.napari_affine()), meta),
                    "image"))
    else:
        out.append((arrays[0], _emission_kwargs(name, arrays[0], ref_em.image.napari_affine(), meta), "image"))
    return out


def series_layers(series_list, *, path=None) -> list[tuple]:
    """Layer data for loose series (a single volume without times): one 3-D layer each."""
    out = []
    for n, s in enumerate(sorted(series_list, key=lambda s: s.modality != "CT")):
        label = s.get("series_description") or s.modality
        meta = _meta("ct" if s.modality == "CT" else "emission", path, units=s.get("units") or s.image.units)
        if s.modality == "CT":
            out.append((s.image.array, _ct_kwargs(label, s.image.napari_affine(), meta), "image"))
        elif s.modality in ("NM", "PT"):
            arr = s.image.array.astype(np.float32, copy=False)
            out.append((arr, _emission_kwargs(label, arr, s.image.napari_affine(), meta), "image"))
        else:
            out.append((s.image.array, _labelled({"name": label, "affine": s.image.napari_affine(), "metadata": meta},
                                                 3), "image"))
    return out


def label_layer_data(label_map, *, name: str = "regions", path=None, study_path=None) -> tuple:
    """Labels layer data for a :class:`~spectrack.regions.labelmap.LabelMap` (names as features)."""
    names = {int(k): str(v) for k, v in sorted(label_map.names.items())}
    idx = [0] + list(names)
    features = {"index": np.array(idx, dtype=int), "name": np.array([""] + list(names.values()), dtype=object)}
    meta = _meta("labels", study_path, names=names, source=str(path or label_map.source or ""))
    return (np.asarray(label_map.image.array).astype(np.int32, copy=False),
            _labelled({"name": name, "affine": label_map.image.napari_affine(), "features": features,
                       "metadata": meta, "opacity": 0.5}, 3),
            "labels")


def _layer_matrix(layer) -> np.ndarray:
    """Homogeneous data-to-world matrix of a layer (all its transforms composed)."""
    nd = layer.ndim
    origin = np.asarray(layer.data_to_world(np.zeros(nd)), dtype=float)
    cols = [np.asarray(layer.data_to_world(e), dtype=float) - origin for e in np.eye(nd)]
    m = np.eye(nd + 1)
    m[:nd, :nd] = np.stack(cols, axis=1)
    m[:nd, nd] = origin
    return m


def _layer_names(layer) -> dict[int, str]:
    names: dict[int, str] = {}
    feats = getattr(layer, "features", None)
    if feats is not None and "index" in feats and "name" in feats:
        for i, n in zip(feats["index"], feats["name"]):
            if int(i) != 0 and isinstance(n, str) and n:
                names[int(i)] = n
    meta = (layer.metadata or {}).get(METADATA_KEY, {}).get("names") or {}
    for k, v in meta.items():
        names.setdefault(int(k), str(v))
    return names


def layer_label_map(layer, reference: Image | None = None):
    """A :class:`~spectrack.regions.labelmap.LabelMap` from a napari Labels layer.

    The grid comes from the layer's transforms (``data_to_world``); a layer in
    plain pixel coordinates with the shape of ``reference`` is taken to be on
    ``reference``'s grid. A 4-D ``(t, z, y, x)`` layer is collapsed over time
    (regions drawn at any time point count). Names come from the layer's
    ``features`` (``index``, ``name``) or metadata; new labels are called
    ``label_<n>``.
    """
    from spectrack.errors import LabelError
    from spectrack.regions.labelmap import LabelMap

    data = np.asarray(layer.data)
    m = _layer_matrix(layer)
    if data.ndim == 4:
        data = data.max(axis=0)
        m = m[1:, 1:]
    elif data.ndim != 3:
        raise LabelError(f"Labels layer {layer.name!r} is {data.ndim}-D: draw regions in a 3-D (or time x 3-D) "
                         "layer over the study")
    if reference is not None and np.allclose(m, np.eye(4)) and data.shape == reference.array.shape:
        m = reference.napari_affine()
    img = image_from_napari_affine(data, m, units="label")
    present = [int(v) for v in np.unique(data) if v != 0]
    if not present:
        raise LabelError(f"Labels layer {layer.name!r} is empty: paint at least one region")
    names = {k: v for k, v in _layer_names(layer).items() if k in present}
    return LabelMap(img, names, source=f"napari layer {layer.name}")

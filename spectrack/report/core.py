"""Gather what the report shows (from a run or from a results folder) and write it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, SpectrackError
from ..io_utils import atomic_path, atomic_write_text

__all__ = ["ReportData", "report_data", "report_data_from_results", "write_report", "report_from_results",
           "render_report"]

#: File names of the time-activity figures, by group (see figures.TAC_GROUPS).
_TAC_FILES = {"CNS and CSF": "tac_cns.png", "Organs and body": "tac_organs.png",
              "Free pertechnetate checks": "tac_pertechnetate.png", "Field of view": "tac_fov.png"}
# figures this module writes: stale ones from an earlier report are removed
_OWN_FIGURE = re.compile(r"^(tac_[a-z_]+|mip|profile)\.png$")


@dataclass
class ReportData:
    """Everything the report shows.

    ``volumes`` (values to project, one per time point) and ``label_volumes``
    are :class:`~spectrack.report.figures.CanonicalVolume`; ``mip_note``
    says why projections or outlines are missing.
    """

    table: object
    metadata: dict
    metrics: object | None = None
    fits: object | None = None
    profile: object | None = None
    front: object | None = None
    volumes: list | None = None
    label_volumes: list | None = None
    label_names: dict = field(default_factory=dict)
    titles: list = field(default_factory=list)
    value_label: str = ""
    mip_caption: str = ""
    mip_note: str | None = None
    source: str | None = None


def _value(d):
    return d.get("value") if isinstance(d, dict) else d


def _split_profile(p):
    """(profile table, front table) from a DataFrame, a dict or an object with attributes.

    The front is computed with :func:`spectrack.regions.neuraxis.tracer_front`
    (its defaults) when only the profile is given.
    """
    import pandas as pd

    if p is None:
        return None, None
    if isinstance(p, pd.DataFrame):
        prof, front = p, p.attrs.get("front")
    else:
        get = p.get if isinstance(p, dict) else (lambda k: getattr(p, k, None))
        prof = next((get(k) for k in ("profile", "table") if isinstance(get(k), pd.DataFrame)), None)
        front = get("front")
    front = front if isinstance(front, pd.DataFrame) else None
    if prof is not None and front is None and {"timepoint", "time_h", "distance_mm", "position_mm",
                                               "pct_id_per_cm"} <= set(prof.columns) and len(prof):
        from ..regions.neuraxis import tracer_front

        front = tracer_front(prof)
    return prof, front


def _volumes(data: ReportData, images, label_maps) -> None:
    """Fill the projection volumes: %ID/mL decay-corrected when calibrated, else image values."""
    from .figures import canonical

    meta = data.metadata
    cals = meta.get("calibration") or []
    dose = meta.get("dose") or {}
    a_inj = _value(dose.get("injected_activity_mbq"))
    hl = _value(dose.get("half_life_h"))
    table = data.table
    times = table.groupby("timepoint")["time_h"].first().to_dict() if len(table) else {}
    tps = sorted(times)
    ks = [c.get("mbq_per_voxel_per_unit") if isinstance(c, dict) else None for c in cals]
    calibrated = (len(ks) >= len(images) and all(k is not None and math.isfinite(float(k)) for k in ks[:len(images)])
                  and a_inj and hl and len(tps) >= len(images))
    vols, titles = [], []
    for n, img in enumerate(images):
        arr = np.asarray(img.array, dtype=np.float32)
        t = float(times[tps[n]]) if n < len(tps) else math.nan
        if calibrated:
            fac = float(ks[n]) * math.exp(math.log(2.0) * t / float(hl)) / float(a_inj) * 100.0 / img.voxel_volume_ml
            arr = arr * np.float32(fac)
        vols.append(canonical(img, arr))
        titles.append(f"time point {tps[n] if n < len(tps) else n}: {t:.2f} h" if math.isfinite(t)
                      else f"time point {n}")
    data.volumes, data.titles = vols, titles
    units = getattr(images[0], "units", "") or "image units"
    data.value_label = "%ID/mL, decay-corrected to injection" if calibrated else f"image value ({units})"
    oblique = any(v.oblique for v in vols)
    data.mip_caption = ("Maximum along the projection of " + data.value_label
                        + ", one colour scale for all time points (square-root scale, so that low activity shows "
                          "next to hot spots; it tops at the 99.5th percentile of the projections, hotter pixels "
                          "are black). Head up; coronal views in radiological convention (patient's right "
                          "on the left, R), sagittal views with anterior on the left (A). Axes in mm; outlines: "
                          "regions of the label map on each time point's SPECT grid."
                        + (" The grid is oblique: shown along its nearest world axes." if oblique else ""))
    if label_maps:
        data.label_volumes = [canonical(lm.image) if lm is not None else None for lm in label_maps]
        names: dict = {}
        for lm in label_maps:
            if lm is not None:
                names.update({int(k): str(v) for k, v in lm.names.items()})
        data.label_names = names


def report_data(result) -> ReportData:
    """:class:`ReportData` from a :class:`~spectrack.pipeline.StudyResult`."""
    import pandas as pd

    kin = getattr(result, "kinetics", None)
    recorded = (result.metadata or {}).get("neuraxis_front")
    prof = getattr(result, "profile", None)
    if isinstance(prof, pd.DataFrame) and isinstance(recorded, list) and recorded:
        prof = {"profile": prof, "front": pd.DataFrame(recorded)}   # the front the run recorded
    prof, front = _split_profile(prof)
    from .figures import _without_attrs

    data = ReportData(table=_without_attrs(result.table), metadata=result.metadata or {},
                      metrics=getattr(kin, "metrics", None), fits=getattr(kin, "fits", None),
                      profile=prof, front=front)
    study = getattr(result, "study", None)
    if study is not None and study.timepoints:
        images = [tp.emission.image for tp in study.timepoints]
        labels = list(getattr(result, "labels", None) or [])
        if len(labels) == len(images):  # on each emission grid already; resampled only if not
            labels = [lm.resampled_to(img) if lm is not None else None for lm, img in zip(labels, images)]
        else:
            labels = []
        _volumes(data, images, labels if labels else None)
        if not labels:
            data.mip_note = "no label maps in the result: projections are shown without region outlines."
    else:
        data.mip_note = "no images in the result: projections left out."
    return data


def _read_csv(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {path}: {err}") from None


def report_data_from_results(results_dir) -> ReportData:
    """:class:`ReportData` from a results folder (``regions.csv``, ``study.json`` ...).

    The images for the projections are re-loaded from the study path in
    ``study.json`` and the regions from ``provenance.parameters.labels``, when
    they still exist and still match; otherwise the projections are left out
    (or drawn without outlines) and ``mip_note`` says why.
    """
    res = Path(results_dir)
    if not res.is_dir():
        raise InputError(f"results folder {res} does not exist: give the output folder of spectrack quantify")
    for name in ("regions.csv", "study.json"):
        if not (res / name).is_file():
            raise InputError(f"{res / name} is missing: give the output folder of spectrack quantify "
                             "(it holds regions.csv and study.json)")
    table = _read_csv(res / "regions.csv")
    try:
        meta = json.loads((res / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {res / 'study.json'}: {err}") from None
    need = {"timepoint", "time_h", "region", "pct_id"}
    if not need <= set(table.columns):
        raise InputError(f"{res / 'regions.csv'} lacks the columns {', '.join(sorted(need - set(table.columns)))}: "
                         "is it a spectrack region table?")
    if "kind" not in table:
        table["kind"] = "region"
    metrics = _read_csv(res / "kinetics.csv") if (res / "kinetics.csv").is_file() else None
    fits = _read_csv(res / "fits.csv") if (res / "fits.csv").is_file() else None
    prof = _read_csv(res / "neuraxis_profile.csv") if (res / "neuraxis_profile.csv").is_file() else None
    front = _read_csv(res / "neuraxis_front.csv") if (res / "neuraxis_front.csv").is_file() else None
    prof, front = _split_profile({"profile": prof, "front": front})
    data = ReportData(table=table, metadata=meta, metrics=metrics, fits=fits, profile=prof, front=front,
                      source=str(res))
    _reload_images(data)
    return data


def _reload_images(data: ReportData) -> None:
    from ..load import load_study
    from ..regions.formats.nifti import read_label_map

    meta = data.metadata
    st = meta.get("study") or {}
    params = (meta.get("provenance") or {}).get("parameters") or {}
    path = st.get("path")
    if not path or not Path(path).exists():
        data.mip_note = (f"the study images ({path or 'path not recorded'}) are no longer there: maximum-intensity "
                         "projections left out. Re-run spectrack quantify (or spectrack report where the inputs "
                         "exist) to include them.")
        return
    try:
        study = load_study(path, times_h=params.get("times_h"), subject=params.get("subject"))
    except (SpectrackError, OSError, ValueError) as err:  # files changed or damaged since the run
        data.mip_note = (f"the study at {path} could not be re-loaded ({err}): maximum-intensity projections "
                         "left out.")
        return
    recorded = st.get("timepoints") or []
    same = len(recorded) == len(study.timepoints) and all(
        list(tp.emission.image.shape_ijk) == list(((r.get("emission") or {}).get("grid") or {}).get("shape_ijk", []))
        and (tp.acquisition_start.isoformat(sep=" ") if tp.acquisition_start else None) == r.get("acquisition_start")
        for tp, r in zip(study.timepoints, recorded))
    if not same:
        data.mip_note = (f"the study at {path} no longer matches study.json (time points or grids differ): "
                         "maximum-intensity projections left out.")
        return
    labels = None
    lab_path = params.get("labels")
    note = None
    if lab_path and Path(lab_path).exists():
        try:
            lm = read_label_map(lab_path)
            transforms, note = _transforms(data, len(study.timepoints))
            labels = [lm.resampled_to(tp.emission.image, tr) for tp, tr in zip(study.timepoints, transforms)]
        except (SpectrackError, OSError, RuntimeError) as err:
            labels = None
            note = f"the label map {lab_path} could not be placed ({err}): projections shown without region outlines."
    else:
        note = (f"the label map ({lab_path or 'automatic regions, not stored'}) is not available: projections shown "
                "without region outlines.")
    _volumes(data, [tp.emission.image for tp in study.timepoints], labels)
    data.mip_note = note


def _transforms(data: ReportData, n: int) -> tuple[list, str | None]:
    """Registration transforms of a results folder (``transforms/tp{i}.tfm``), or identities with a note."""
    params = ((data.metadata.get("provenance") or {}).get("parameters") or {})
    if not params.get("register") or not data.source:
        return [None] * n, None
    files = [Path(data.source) / "transforms" / f"tp{i}.tfm" for i in range(n)]
    if not all(f.is_file() for f in files):
        return [None] * n, ("the registration transforms (transforms/tp*.tfm) are not in the results folder: "
                            "outlines are the label map resampled onto each time point without registration.")
    from ..align.register import load_transform

    return [load_transform(f) for f in files], None


def render_report(data: ReportData, *, log_y: bool = False) -> tuple[str, dict[str, bytes]]:
    """The HTML page and the figures (PNG bytes by file name) of a :class:`ReportData`."""
    from .figures import figure_png, group_regions, mip_figure, profile_figure, tac_figure
    from .html import render_html

    figures: dict[str, bytes] = {}
    tac_names: dict[str, str] = {}
    t = data.table
    if len(t):
        for group, regions in group_regions(t["region"].astype(str)).items():
            name = _TAC_FILES.get(group) or "tac_" + re.sub(r"[^a-z]+", "_", group.lower()).strip("_") + ".png"
            fig = tac_figure(t, regions, fits=data.fits, title=f"{group}: %ID over time", log_y=log_y)
            figures[name] = figure_png(fig)
            tac_names[group] = name
    if data.volumes:
        fig = mip_figure(data.volumes, data.label_volumes, titles=data.titles, names=data.label_names,
                         value_label=data.value_label)
        figures["mip.png"] = figure_png(fig)
    if data.profile is not None and len(data.profile):
        fig = profile_figure(data.profile)
        if fig is not None:
            figures["profile.png"] = figure_png(fig)
    return render_html(data, figures, tac_names), figures


def _write(data: ReportData, out_dir, *, log_y: bool) -> dict[str, Path]:
    out = Path(out_dir)
    page, figures = render_report(data, log_y=log_y)
    outputs: dict[str, Path] = {}
    fig_dir = out / "figures"
    for name, png in figures.items():
        with atomic_path(fig_dir / name) as tmp:
            Path(tmp).write_bytes(png)
        outputs[f"figures/{name}"] = fig_dir / name
    if fig_dir.is_dir():  # figures of an earlier report that this one no longer has
        for p in fig_dir.iterdir():
            if p.is_file() and _OWN_FIGURE.match(p.name) and p.name not in figures:
                p.unlink()
    outputs["report.html"] = atomic_write_text(out / "report.html", page)
    return outputs


def write_report(result, out_dir, *, log_y: bool = False) -> dict[str, Path]:
    """Write ``out_dir/report.html`` (self-contained) and ``out_dir/figures/*.png``.

    Parameters
    ----------
    result : StudyResult
        From :func:`spectrack.run_study`.
    out_dir : path-like
        Output folder (created if needed).
    log_y : bool
        Logarithmic %ID axis in the time-activity figures.

    Returns
    -------
    dict of str to Path
        ``"report.html"`` and ``"figures/<name>.png"``.
    """
    return _write(report_data(result), out_dir, log_y=log_y)


def report_from_results(results_dir, *, out_dir=None, log_y: bool = False) -> dict[str, Path]:
    """Regenerate the report from a results folder of ``spectrack quantify``.

    Reads ``regions.csv`` and ``study.json`` (required), ``kinetics.csv``,
    ``fits.csv``, ``neuraxis_profile.csv`` and ``neuraxis_front.csv`` (when
    present); the projections need the
    original images and label map (see :func:`report_data_from_results`).

    Parameters
    ----------
    results_dir : path-like
    out_dir : path-like, optional
        Where to write (default: ``results_dir``).
    log_y : bool
        Logarithmic %ID axis in the time-activity figures.

    Returns
    -------
    dict of str to Path
    """
    from ..io_utils import record_outputs, write_errors

    data = report_data_from_results(results_dir)
    target = Path(out_dir if out_dir is not None else results_dir)
    with write_errors(target):
        outputs = _write(data, target, log_y=log_y)
        if target.resolve() == Path(results_dir).resolve():  # a later quantify replaces this report too
            record_outputs(target, ("report.html", "figures"), command="spectrack report")
    return outputs

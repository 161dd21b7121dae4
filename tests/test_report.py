"""The study report: self-contained HTML, figures, mass balance, CLI regeneration."""

import base64
import io
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from spectrack.geometry import Image
from spectrack.report import mass_balance, report_from_results, write_report
from spectrack.report.figures import canonical, fit_curve, group_regions, mip_figure, tac_figure
from spectrack.report.html import _fixed, fmt, fmt_pct

TIMES_H = (0.5, 2.0, 6.0, 24.0)


@pytest.fixture(scope="module")
def rat(tmp_path_factory):
    """A rat phantom quantified by run_study, with intervals and kinetics, and its report."""
    import spectrack
    from spectrack.phantom import make_study

    root = tmp_path_factory.mktemp("report")
    truth = make_study(root / "study", preset="rat", times_h=TIMES_H, formats=("nifti",))
    settings = {"labels": str(root / "study" / "labels.nii.gz"), "calibration": "sensitivity",
                "sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"], "species": "rat",
                "uncertainty_draws": 200, "report": False}
    res = spectrack.run_study(root / "study" / "nifti", settings, out_dir=root / "out")
    if "pct_id_lo" not in res.table:  # the pipeline did not add intervals: add them here
        from spectrack.kinetics import add_pct_id_intervals

        cpm = [1.0 / c["mbq_per_voxel_per_unit"] for c in res.metadata["calibration"]]
        res.table = add_pct_id_intervals(res.table, [tp.emission.image for tp in res.study.timepoints],
                                         res.labels, counts_per_mbq=cpm, n_draws=200)
    if res.kinetics is None:
        from spectrack.kinetics import analyse_kinetics

        res.kinetics = analyse_kinetics(res.table, half_life_h=truth["half_life_h"])
    for name, frame in (("regions.csv", res.table), ("kinetics.csv", res.kinetics.metrics),
                        ("fits.csv", res.kinetics.fits)):
        frame.to_csv(root / "out" / name, index=False, float_format="%.9g")
    outputs = write_report(res, root / "out")
    html = (root / "out" / "report.html").read_text(encoding="utf-8")
    return {"root": root, "truth": truth, "result": res, "outputs": outputs, "html": html}


def _png_ok(data: bytes, min_side=300):
    im = PILImage.open(io.BytesIO(data))
    im.verify()
    im = PILImage.open(io.BytesIO(data))
    assert im.format == "PNG"
    w, h = im.size
    assert min(w, h) >= min_side and max(w, h) <= 4000, im.size
    return im.size


def _section(html, anchor, next_anchor):
    return html[html.index(f"id='{anchor}'"):html.index(f"id='{next_anchor}'")]


# ---------------------------------------------------------------- outputs
def test_outputs_and_pngs(rat):
    out = rat["outputs"]
    assert out["report.html"] == rat["root"] / "out" / "report.html"
    figs = {k for k in out if k.startswith("figures/")}
    assert {"figures/tac_cns.png", "figures/tac_organs.png", "figures/tac_pertechnetate.png",
            "figures/mip.png"} <= figs
    if rat["result"].profile is not None:  # the pipeline computed the neuraxis profile
        assert "figures/profile.png" in figs
    for k in figs:
        data = out[k].read_bytes()
        assert 5_000 < len(data) < 2_000_000, (k, len(data))
        _png_ok(data)
    assert not list((rat["root"] / "out" / "figures").glob(".tmp-*"))  # atomic writes left nothing behind


def test_html_is_self_contained(rat):
    html = rat["html"]
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    imgs = re.findall(r"""<img[^>]*src='([^']*)'""", html)
    assert len(imgs) == len([k for k in rat["outputs"] if k.startswith("figures/")])
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        _png_ok(base64.b64decode(src.split(",", 1)[1]))


def test_metadata_regions_and_provenance(rat):
    html, truth, res = rat["html"], rat["truth"], rat["result"]
    study = _section(html, "study", "summary")
    assert f"{truth['injected_mbq']:g} MBq" in study
    assert "6.0067 h" in study and "DDEP" in study           # half-life and its source
    assert "Tc-99m" in study and "TracerRadionuclide" in study
    assert truth["subject_id"] in study and ">rat<" in study
    assert "sensitivity" in study and "Calibration per time point" in study
    for region in res.table["region"].unique():
        assert f">{region}<" in html, region
    tp_section = html[html.index("id='timepoints'"):]
    assert tp_section.count("<details open><summary>Time point") == len(TIMES_H)
    # a %ID with its interval, as in the table
    row = res.table[(res.table.region == "brain") & (res.table.timepoint == 0)].iloc[0]
    assert f"{fmt_pct(row.pct_id)} [{fmt_pct(row.pct_id_lo)} – {fmt_pct(row.pct_id_hi)}]" in tp_section
    prov = html[html.index("id='provenance'"):]
    n_inputs = len(res.metadata["provenance"]["inputs_sha256"])
    assert f"{n_inputs} input file(s)" in prov and "Combined SHA-256" in prov
    assert "uncertainty_draws" in prov


def test_kinetics_section(rat):
    kin = _section(rat["html"], "kinetics", "mips")
    metrics = rat["result"].kinetics.metrics
    brain = metrics[(metrics.region == "brain") & (metrics.quantity == "pct_id") & (metrics.metric == "cmax")
                    & (metrics.correction == "decay_corrected")].iloc[0]
    # the value with its 95 % interval under it
    assert brain["lo"] < brain["value"] < brain["hi"]
    assert (f"<td>{fmt(brain['value'], 4)}<br><span class='src'>[{fmt(brain['lo'], 3)}, {fmt(brain['hi'], 3)}]"
            "</span></td>") in kin
    assert "Under a value: its 95 % interval" in kin and "<b>Intervals</b>" in kin
    assert "brain: every metric and fit" in kin and "selected model" in kin


# ---------------------------------------------------------------- mass balance
def test_mass_balance_matches_table(rat):
    """The report's balance: field of view and unaccounted %ID per scan, against the phantom's truth (what the
    bladder voided left the body; no removed file was given, so it is unaccounted for and flagged past 10 %ID)."""
    t, truth = rat["result"].table, rat["truth"]
    bal = _section(rat["html"], "balance", "curves")
    n_flag = 0
    for tp in truth["timepoints"]:
        d = t[t.timepoint == tp["index"]]
        fov = d.loc[d.kind == "fov", "pct_id"].sum()
        regions = d.loc[d.kind == "region", "pct_id"].sum()
        assert fov == pytest.approx(tp["in_body_pct_id"], abs=1e-3)
        un = 100.0 - fov
        assert un == pytest.approx(tp["excreted_pct_id"], abs=1e-3)
        flag = abs(un) > 10.0
        n_flag += flag
        check = "<span class='bad'>check</span>" if flag else "<span class='ok'>ok</span>"
        assert (f"<td>{fmt_pct(fov)}</td><td>{fmt_pct(regions)}</td><td>{fmt_pct(0.0)}</td><td>{fmt_pct(fov)}</td>"
                f"<td>{_fixed(un, 2, sign=True)}</td><td>{check}</td>") in bal
    assert n_flag >= 1
    assert f"{n_flag} time point(s) with more than 10 %ID unaccounted for" in bal
    assert "No removed activity was given" in bal
    assert "add up to the field of view at every time point" in bal


def test_mass_balance_flags_discrepancy():
    t = pd.DataFrame({"timepoint": [0] * 4 + [1] * 4, "time_h": [1.0] * 4 + [2.0] * 4,
                      "kind": ["region", "region", "outside", "fov"] * 2,
                      "region": ["a", "b", "outside_regions", "field_of_view"] * 2,
                      "pct_id": [50.0, 30.0, 10.0, 90.0, 50.0, 30.0, 10.0, 89.0]})
    mb = mass_balance(t)
    assert mb.flag.tolist() == [False, True]
    assert mb.discrepancy_pct_id[1] == pytest.approx(1.0)
    assert mb.discrepancy_pct_of_fov[1] == pytest.approx(100 / 89)
    # 0.4 % of the field of view is within tolerance, 0.6 % is not
    t.loc[7, "pct_id"] = 90 / 1.004
    assert not mass_balance(t).flag[1]
    t.loc[7, "pct_id"] = 90 / 1.006
    assert mass_balance(t).flag[1]
    assert mass_balance(t[t.kind != "outside"]).flag.all()  # a missing row is flagged


# ---------------------------------------------------------------- figures
def test_canonical_orientation():
    arr = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)  # [k, j, i]
    # i runs to -x, j to +z (head), k to +y
    d = np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    img = Image(arr, origin_mm=(10, 20, 30), spacing_mm=(1, 2, 3), direction=d)
    v = canonical(img)
    assert v.array.shape == (3, 2, 4)  # (z, y, x)
    assert v.spacing_mm.tolist() == [1, 3, 2]
    assert v.first_mm.tolist() == [7, 20, 30]
    # world point of every canonical voxel must be the world point of the original voxel
    for (z, y, x) in [(0, 0, 0), (2, 1, 3), (1, 0, 2)]:
        world = v.first_mm + v.spacing_mm * np.array([x, y, z])
        i, j, k = np.round(img.world_to_index(world)).astype(int)
        assert v.array[z, y, x] == arr[k, j, i]


def test_mip_head_up_and_outlines():
    arr = np.zeros((20, 6, 8), np.float32)       # z, y, x with identity direction
    arr[17, 3, 4] = 5.0                           # hot spot near the head (high z)
    lab = np.zeros(arr.shape, np.int16)
    lab[15:19, 2:5, 3:6] = 1
    img = Image(arr, spacing_mm=(2, 2, 2))
    fig = mip_figure([canonical(img)], [canonical(img.with_array(lab))], titles=["t"], names={1: "brain"})
    ax = fig.axes[0]
    ext = ax.images[0].get_extent()
    assert ax.images[0].origin == "lower" and ext[2] < ext[3]   # z increases upwards
    proj = np.asarray(ax.images[0].get_array())
    assert np.unravel_index(np.argmax(proj), proj.shape) == (17, 4)  # (z row, x column)
    assert len(ax.collections) == 1 and len(ax.collections[0].get_segments()) >= 1
    _png_ok(__import__("spectrack.report.figures", fromlist=["figure_png"]).figure_png(fig), min_side=200)


def test_figure_png_lays_out_as_savefig():
    """figure_png lays a constrained figure out itself and saves it once: the PNG savefig writes, engine kept."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spectrack.report.figures import figure_png

    def figure():
        fig = Figure(figsize=(6, 3), layout="constrained")
        a, b = fig.subplots(1, 2)
        a.plot([0, 1, 2], [3.0, 1e4, 5.0], label="a long legend entry")
        a.set_ylabel("a y label\non two lines")
        a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15))
        fig.colorbar(b.imshow(np.arange(12.0).reshape(3, 4)), ax=b, label="colour bar")
        b.set_title("title")
        return fig

    ref = figure()
    FigureCanvasAgg(ref)
    buf = io.BytesIO()
    ref.savefig(buf, format="png", dpi=110)
    fig = figure()
    engine = fig.get_layout_engine()
    assert figure_png(fig) == buf.getvalue()
    assert fig.get_layout_engine() is engine and fig.dpi == ref.dpi


def test_outline_of_a_crop_is_the_outline_of_the_grid():
    from spectrack.report.figures import _label_boxes, _outline

    rng = np.random.default_rng(0)
    lab = np.zeros((30, 9, 25), np.int32)
    lab[4:20, 2:7, 3:11] = 3
    lab[22:29, :, 12:25] = 7
    lab[rng.random(lab.shape) < 0.05] = 0        # holes: several contours per region
    boxes = _label_boxes(lab)
    assert sorted(boxes) == [3, 7]
    z, x = 1.5 + 2.5 * np.arange(30), -40.0 + 1.25 * np.arange(25)
    for v, box in boxes.items():
        full = _outline(x, z, np.any(lab == v, axis=1))
        crop = _outline(x, z, np.any(lab[box] == v, axis=1), origin=(box[0].start, box[2].start))
        assert len(full) == len(crop) > 0
        assert all(np.array_equal(a, b) for a, b in zip(full, crop))   # same vertices, same order, bit for bit
    # labels find_objects cannot take: the whole volume for each value np.unique finds
    neg = lab.astype(np.float64) - 1.0
    assert sorted(_label_boxes(neg)) == [-1, 2, 6]
    assert _label_boxes(neg)[2] == (slice(None),) * 3


def test_fit_curve_and_log_axis(rat):
    fits = rat["result"].kinetics.fits
    # four scans: AICc is undefined even for the mono-exponential (n <= K + 1 = 4), so no model is chosen
    assert not fits.selected.any()
    assert fits.selection_reason.str.contains(r"mono: AICc undefined \(n=4 <= K\+1=4\)").all()
    row = fits[fits.converged & (fits.quantity == "pct_id") & (fits.correction == "decay_corrected")].iloc[0]
    f = fit_curve(row.to_dict())
    t = np.array([0.5, 3.0])
    from spectrack.kinetics.fits import MODELS, model_function

    p = {k: row[k] for k in MODELS[row.model].param_names}
    assert np.allclose(f(t), model_function(row.model, p)(t))
    assert fit_curve({"model": "mono", "A": float("nan"), "k": 1.0}) is None
    groups = group_regions(rat["result"].table.region)
    fig = tac_figure(rat["result"].table, groups["CNS and CSF"], fits=fits, log_y=True)
    assert fig.axes[0].get_yscale() == "log"
    # zeros only: the log axis is not asked for (no warning)
    z = pd.DataFrame({"region": "a", "time_h": [1.0, 2.0], "pct_id": [0.0, 0.0], "kind": "region"})
    tac_figure(z, ["a"], log_y=True)


def test_region_groups():
    g = group_regions(["liver", "brain", "thyroid", "field_of_view", "my_spleen", "Cord C1-C7", "cns"])
    assert g["CNS and CSF"] == ["cns", "brain", "Cord C1-C7"]
    assert g["Organs and body"] == ["liver", "my_spleen"]
    assert g["Free pertechnetate checks"] == ["thyroid"] and g["Field of view"] == ["field_of_view"]


# ---------------------------------------------------------------- regeneration
def _copy_results(rat, dest):
    dest.mkdir()
    for n in ("regions.csv", "study.json", "kinetics.csv", "fits.csv"):
        shutil.copy(rat["root"] / "out" / n, dest / n)
    return dest


def test_cli_report_in_process(rat, tmp_path, capsys):
    from spectrack.cli import main

    res = _copy_results(rat, tmp_path / "res")
    assert main(["report", str(res), "--log-y"]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out
    html = (res / "report.html").read_text(encoding="utf-8")
    assert (res / "figures" / "mip.png").is_file() and "data:image/png;base64," in html
    assert f"from the results in <code>{res}</code>" in html
    for region in ("brain", "canal_lumbar", "liver", "thyroid"):
        assert f">{region}<" in html
    # errors: one line, documented exit code
    assert main(["report", str(tmp_path / "nothing")]) == 3
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 3
    assert "regions.csv is missing" in capsys.readouterr().err


def test_report_without_inputs_omits_mips(rat, tmp_path):
    res = _copy_results(rat, tmp_path / "res")
    meta = json.loads((res / "study.json").read_text())
    meta["study"]["path"] = str(tmp_path / "moved_away")
    meta["provenance"]["parameters"]["labels"] = str(tmp_path / "moved_away" / "labels.nii.gz")
    (res / "study.json").write_text(json.dumps(meta))
    (res / "figures").mkdir()
    (res / "figures" / "mip.png").write_bytes(b"stale")          # from an earlier report
    (res / "figures" / "notes.png").write_bytes(b"not ours")
    out = report_from_results(res)
    assert "figures/mip.png" not in out
    assert not (res / "figures" / "mip.png").exists()             # the stale projection is gone
    assert (res / "figures" / "notes.png").exists()               # other files are left alone
    html = out["report.html"].read_text(encoding="utf-8")
    mips = _section(html, "mips", "profile")
    assert "no longer there" in mips and "projections left out" in mips and "<img" not in mips
    assert "figures/tac_cns.png" in out and "brain: every metric and fit" in html


def test_report_without_kinetics_or_labels(rat, tmp_path):
    res = _copy_results(rat, tmp_path / "res")
    (res / "kinetics.csv").unlink()
    (res / "fits.csv").unlink()
    t = pd.read_csv(res / "regions.csv")
    t[t.region.isin(["brain", "liver", "outside_regions", "field_of_view"])].to_csv(res / "regions.csv")
    meta = json.loads((res / "study.json").read_text())
    meta["provenance"]["parameters"]["labels"] = None
    meta["kinetics_method"] = ["kinetics not fitted: 2 time point(s), at least 3 needed"]
    (res / "study.json").write_text(json.dumps(meta))
    out = report_from_results(res, out_dir=tmp_path / "rep")
    assert out["report.html"] == tmp_path / "rep" / "report.html"
    html = out["report.html"].read_text(encoding="utf-8")
    assert "No kinetics: kinetics not fitted: 2 time point(s)" in html
    assert "figures/mip.png" in out and "without region outlines" in html
    # regions dropped from the table: the mass balance no longer adds up and says so
    assert "time point(s) flagged" in _section(html, "balance", "curves")


def test_profile_section(rat, tmp_path):
    from spectrack.regions.neuraxis import profile_study
    from spectrack.quantification.calibration import calibrate_study
    from spectrack.quantification.parameters import resolve_parameters
    from spectrack.report.core import _split_profile, report_data
    from spectrack.report.figures import figure_png, profile_figure
    from spectrack.report.html import render_html

    res = rat["result"]
    params = resolve_parameters(res.study)
    cals = calibrate_study(res.study, params, method="sensitivity",
                           sensitivity_cps_per_mbq=rat["truth"]["sensitivity_cps_per_mbq"])
    prof = profile_study(res.study, res.labels, cals, params)
    data = report_data(res)
    data.profile, data.front = _split_profile(prof)               # the front is computed when absent
    assert len(data.front) == len(TIMES_H)
    fig = profile_figure(data.profile)
    # the marks are the leading edge of the spread measures (not the half-maximum front), and the panels
    # beside show it and the rostral fractions against time
    from spectrack.regions.neuraxis import spread_measures

    edge = spread_measures(data.profile)["leading_edge_mm"].to_numpy(float)
    ax, ax_edge, ax_frac = fig.axes[:3]
    dashed = sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--")
    assert dashed == pytest.approx(sorted(edge[np.isfinite(edge)]))
    assert ax_edge.lines[0].get_ydata() == pytest.approx(edge, nan_ok=True)
    assert "10 %" in ax_edge.get_title() and "fraction" in ax_frac.get_title()
    png = figure_png(fig)
    _png_ok(png)
    html = render_html(data, {"profile.png": png}, {})
    section = _section(html, "profile", "timepoints")
    assert "Rostral spread" in section and "<img" in section
    spread = data.metadata["neuraxis_spread"]  # what the run recorded in study.json
    assert f"<td>{fmt(spread['per_timepoint'][0]['leading_edge_mm'], 4)}</td>" in section
    assert "Arrival at the skull base" in section and "spread rate" in section


def test_run_study_writes_report(rat, tmp_path):
    import spectrack

    root = rat["root"]
    settings = {"labels": str(root / "study" / "labels.nii.gz"), "calibration": "sensitivity",
                "sensitivity_cps_per_mbq": rat["truth"]["sensitivity_cps_per_mbq"], "uncertainty_draws": 0}
    res = spectrack.run_study(root / "study" / "nifti", settings, out_dir=tmp_path)
    assert res.outputs["report.html"] == tmp_path / "report.html"
    assert "figures/mip.png" in res.outputs and (tmp_path / "figures" / "mip.png").is_file()


def test_number_formats():
    assert fmt(None) == "—" and fmt(float("inf")) == "∞" and fmt(1234567.0) == "1.235e+06"
    assert fmt(74.0) == "74" and fmt(6.0067, 6) == "6.0067"
    assert fmt_pct(100.0) == "100.000" and fmt_pct(float("nan")) == "—"
    assert math.isclose(float(fmt_pct(12.34567)), 12.346)


def test_report_from_results_uses_registration_transforms(rat, tmp_path):
    import spectrack
    from spectrack.report.core import report_data, report_data_from_results

    root = rat["root"]
    settings = {"labels": str(root / "study" / "labels.nii.gz"), "calibration": "sensitivity",
                "sensitivity_cps_per_mbq": rat["truth"]["sensitivity_cps_per_mbq"], "register": True,
                "uncertainty_draws": 0, "report": False}
    res = spectrack.run_study(root / "study" / "nifti", settings, out_dir=tmp_path)
    if not (tmp_path / "transforms").is_dir():
        pytest.skip("the pipeline does not save registration transforms")
    again = report_data_from_results(tmp_path)
    assert again.mip_note is None
    run = report_data(res)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(again.label_volumes, run.label_volumes))
    # without the transforms the outlines are drawn unregistered, and the report says so
    shutil.rmtree(tmp_path / "transforms")
    assert "without registration" in report_data_from_results(tmp_path).mip_note
    from spectrack.report.html import render_html

    assert "<h3>Registration</h3>" in render_html(run, {}, {})

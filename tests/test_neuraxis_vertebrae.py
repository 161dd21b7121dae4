"""%ID per vertebra along the canal (spectrack.regions.neuraxis.vertebra_table) on the discrete-vertebra phantom.

The vertebrae are counted on the CT by the automatic regions; each profile slab goes to the vertebra its centre
lies in. Truth: the phantom's exact canal-level %ID (each level is the sum of its vertebrae, and the levels'
boundaries are the L/S1, T/L1 and C7/T1 discs) and its vertebral formula.
"""

import numpy as np
import pandas as pd
import pytest

from spectrack.phantom import make_study
from spectrack.pipeline import run_study
from spectrack.regions.auto.vertebrae import VERTEBRAL_FORMULA, vertebra_names
from spectrack.regions.neuraxis import vertebra_table
from spectrack.regions.vocabulary import CANAL_LEVELS


@pytest.fixture(scope="module")
def nhp_vertebrae(tmp_path_factory):
    root = tmp_path_factory.mktemp("vert")
    truth = make_study(root / "study", "nhp", seed=32, times_h=[0.5, 2.0], formats=("nifti",), ct_refine=3, units="bqml",
                       vertebrae="discrete")
    res = run_study(root / "study" / "nifti", {"auto_regions": "nhp", "uncertainty_draws": 0, "report": False},
                    out_dir=root / "out")
    return root, truth, res


def test_each_vertebra_gets_its_share_and_the_levels_add_up(nhp_vertebrae):
    root, truth, res = nhp_vertebrae
    vt = pd.read_csv(root / "out" / "neuraxis_vertebrae.csv")
    f = VERTEBRAL_FORMULA["nhp"]
    names = ["sacrum"] + vertebra_names("nhp")[::-1]
    assert len(names) == 1 + f["cervical"] + f["thoracic"] + f["lumbar"]
    prof = res.profile
    table = res.table
    for tp, d in vt.groupby("timepoint"):
        assert d["vertebra"].tolist() == names                       # caudal to rostral, every vertebra once
        assert np.all(d["n_slabs"] > 0) and np.all(np.diff(d["from_mm"]) > 0)
        # nothing lost or counted twice: the vertebrae add up to the whole profile
        assert d["pct_id"].sum() == pytest.approx(prof[prof.timepoint == tp]["pct_id"].sum(), rel=1e-7)  # csv: 9 digits
        tt = truth["timepoints"][int(tp)]["regions"]
        for level in CANAL_LEVELS:
            got = d[d["level"] == level]["pct_id"].sum()
            measured = table[(table.timepoint == tp) & (table.region == level)]["pct_id"].iloc[0]
            # level boundaries located to within a slab (4 mm) of the labels' on steep gradients: within 5 %
            assert got == pytest.approx(measured, rel=0.05, abs=0.05), level
            assert measured == pytest.approx(tt[level]["pct_id"], rel=0.02, abs=0.02), level
    meta = res.metadata["auto_regions"]
    assert "vertebral boundaries" in meta["canal_levels"] and meta["vertebrae"]["vertebrae_mm"]


def test_levels_that_do_not_follow_each_other_give_no_table_and_a_warning(nhp_vertebrae):
    _, _, res = nhp_vertebrae
    prof = res.profile.copy()
    prof.loc[prof.timepoint == prof.timepoint.min(), "level"] = "canal_thoracic"
    vt = vertebra_table(prof, res.metadata["auto_regions"]["vertebrae"])
    assert set(vt["timepoint"]) == {int(prof.timepoint.max())}
    assert len(vt.attrs["warnings"]) == 1 and "no per-vertebra table" in vt.attrs["warnings"][0]
    assert vertebra_table(prof, {}).empty

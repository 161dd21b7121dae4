"""spectrack.regions is laid out by concern (issue 14): readers by format in regions.formats, automatic
segmentation in regions.auto, the neuraxis profile in regions.neuraxis; the paths the README named before keep
importing the same objects."""

import importlib

import pytest


@pytest.mark.parametrize("old, home", [("labels", "formats.nifti"), ("dicomseg", "formats.dicomseg"),
                                       ("rtstruct", "formats.rtstruct"), ("totalseg", "formats.totalseg")])
def test_former_reader_paths_give_the_same_objects(old, home):
    mod = importlib.import_module(f"spectrack.regions.{old}")
    new = importlib.import_module(f"spectrack.regions.{home}")
    assert set(new.__all__) <= set(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is getattr(new, name, getattr(mod, name)), (old, name)
    for name in vars(new):  # any other attribute, private ones included, is looked up in the new home
        if not name.startswith("__"):
            assert getattr(mod, name) is getattr(new, name), (old, name)


def test_labels_path_names_come_from_where_they_are_defined():
    from spectrack import io_utils
    from spectrack.regions import labelmap, labels
    from spectrack.regions.formats import names, nifti

    assert labels.LabelMap is labelmap.LabelMap and labels.RESERVED_NAMES is labelmap.RESERVED_NAMES
    assert labels.read_label_map is nifti.read_label_map and labels.write_label_map is nifti.write_label_map
    assert labels.read_names is names.read_names and labels.nifti_stem is io_utils.nifti_stem


def test_neuraxis_package_reexports_every_name_the_module_had():
    import spectrack.regions.neuraxis as neuraxis
    from spectrack.geometry import Image
    from spectrack.regions import centreline, labelmap, vocabulary
    from spectrack.regions.neuraxis import output, profile, spread, vertebrae

    homes = {"Image": Image, "Centreline": centreline.Centreline, "LabelMap": labelmap.LabelMap,
             "CANAL_LEVELS": vocabulary.CANAL_LEVELS}
    for m in (profile, spread, vertebrae, output):
        homes.update({n: getattr(m, n) for n in m.__all__})
    had = ["ARRIVAL_FRACTION", "CANAL_LEVELS", "Centreline", "EDGE_FRACTION", "FRONT_COLUMNS", "Image", "LabelMap",
           "PROFILE_AXIS_LABELS", "PROFILE_COLUMNS", "SPREAD_COLUMNS", "VERTEBRA_COLUMNS", "WINDOW_MM",
           "centreline_from_labels", "neuraxis_profile", "plot_profile", "profile_study", "spread_measures",
           "tracer_front", "vertebra_table", "write_profile"]
    for name in had:
        assert getattr(neuraxis, name) is homes[name], name
    assert set(neuraxis.__all__) <= set(had) <= set(dir(neuraxis))
    with pytest.raises(AttributeError):
        neuraxis.no_such_name


def test_regions_exports_and_a_light_import():
    import subprocess
    import sys

    code = ("import sys, spectrack.regions as r; "
            "assert {'NeuraxisProfile', 'profile_neuraxis', 'StudyRegions', 'add_auto_regions', "
            "'resolve_regions'} <= set(dir(r)); assert 'numpy' not in sys.modules, 'numpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)

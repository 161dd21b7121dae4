"""Settings validation (shared by quantify, batch and the plugin)."""

import pytest

from spectrack.errors import InputError
from spectrack.settings import Settings, read_settings_file, settings_from_mapping


def test_types_are_coerced():
    s = settings_from_mapping({"injected-mbq": "150", "times_h": "0.5, 4,24", "register": "true"})
    assert s.injected_mbq == 150.0 and s.times_h == [0.5, 4.0, 24.0] and s.register is True


@pytest.mark.parametrize("data,phrase", [
    ({"injected_mbq": -1}, "positive"),
    ({"injected_mbq": "lots"}, "bad value"),
    ({"calibration": "guess"}, "must be one of"),
    ({"colour": "red"}, "unknown setting"),
    ({"injection_time": "noon"}, "ISO 8601"),
    ({"register": "perhaps"}, "bad value"),
])
def test_bad_settings(data, phrase):
    with pytest.raises(InputError, match=phrase):
        settings_from_mapping(data, where="test")


def test_toml_config_with_relative_labels(tmp_path):
    (tmp_path / "c.toml").write_text('[spectrack]\nlabels = "lab.nii.gz"\nsensitivity_cps_per_mbq = 80\n')
    s = read_settings_file(tmp_path / "c.toml")
    assert s.labels == str((tmp_path / "lab.nii.gz").resolve())
    assert s.sensitivity_cps_per_mbq == 80.0


def test_defaults_round_trip():
    d = Settings().to_dict()
    d.pop("extra")
    assert settings_from_mapping(d) == Settings()


def test_option_names_are_keys():
    """A settings file takes the command-line names: ``sensitivity`` is ``sensitivity_cps_per_mbq``."""
    from spectrack.settings import ALIASES, option_name

    assert settings_from_mapping({"sensitivity": "30"}).sensitivity_cps_per_mbq == 30.0
    assert settings_from_mapping({"sensitivity_cps_per_mbq": 30}).sensitivity_cps_per_mbq == 30.0
    assert option_name("sensitivity_cps_per_mbq") == "--sensitivity"
    assert option_name("injected_mbq") == "--injected-mbq"
    assert ALIASES == {"sensitivity": "sensitivity_cps_per_mbq", "density": "density_g_per_ml"}
    with pytest.raises(InputError, match="'sensitivity' and 'sensitivity_cps_per_mbq' are the same setting"):
        settings_from_mapping({"sensitivity": 1, "sensitivity_cps_per_mbq": 1})


@pytest.mark.parametrize("key,suggested", [("sensitvity", "sensitivity"), ("injected_mbg", "injected_mbq"),
                                           ("auto-region", "auto_regions")])
def test_unknown_key_names_the_right_one(key, suggested):
    with pytest.raises(InputError, match=f"unknown setting '{key}'; did you mean '{suggested}'"):
        settings_from_mapping({key: 1}, where="cfg.toml")


def test_setting_error_carries_key_and_problem():
    from spectrack.settings import SettingError

    with pytest.raises(SettingError) as e:
        settings_from_mapping({"duration-s": 0}, where="row 3")
    assert (e.value.key, e.value.problem) == ("duration_s", "must be positive, got 0.0")
    assert str(e.value) == "row 3: duration-s must be positive, got 0.0"
    with pytest.raises(SettingError) as e:
        settings_from_mapping({"residual_time": "noon"})
    assert e.value.key == "residual_time" and "ISO 8601" in e.value.problem
    with pytest.raises(SettingError, match="expected int"):
        settings_from_mapping({"reference": 1.5})


def test_label_patterns(tmp_path):
    from spectrack.errors import LabelError
    from spectrack.settings import labels_for_study

    study = tmp_path / "rat[01]"  # '[' is literal, not a glob class
    (study / "seg").mkdir(parents=True)
    (study / "seg" / "organs_dseg.nii.gz").write_bytes(b"")
    (study / "labels.nii.gz").write_bytes(b"")
    (study / ".hidden_dseg.nii.gz").write_bytes(b"")
    assert labels_for_study("/atlas.nii.gz", study) == "/atlas.nii.gz"  # a plain path: as given
    assert labels_for_study("lab.nii.gz", study) == "lab.nii.gz"
    assert labels_for_study("{study}/labels.nii.gz", study) == str(study / "labels.nii.gz")
    assert labels_for_study("/atlases/{name}.nii.gz", study) == "/atlases/rat[01].nii.gz"
    assert labels_for_study("**/*_dseg.nii.gz", study) == str(study / "seg" / "organs_dseg.nii.gz")
    assert labels_for_study("{study}/seg/*.nii.gz", study) == str(study / "seg" / "organs_dseg.nii.gz")
    assert labels_for_study("lab?ls.nii.gz", study / "study.toml") == str(study / "labels.nii.gz")
    with pytest.raises(LabelError, match="2 files match"):
        labels_for_study("**/*.nii.gz", study)
    with pytest.raises(LabelError, match="no file matches"):
        labels_for_study("*.nrrd", study)
    # a settings file resolves plain relative paths against its folder, never patterns
    (tmp_path / "c.toml").write_text('labels = "{study}/labels.nii.gz"\n')
    assert read_settings_file(tmp_path / "c.toml").labels == "{study}/labels.nii.gz"

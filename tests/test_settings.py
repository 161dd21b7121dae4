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

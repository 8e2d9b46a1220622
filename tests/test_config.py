"""config.py: one settings class; defaults < TOML file < environment; every knob in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilewright.config import Settings, settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_environment_overrides_toml_which_overrides_defaults(tmp_path, monkeypatch):
    config = tmp_path / "tilewright.toml"
    config.write_text('quality = 70\ndzi_tile_size = 510\nformat_checkers = ["vips"]\n')
    monkeypatch.setenv("TILEWRIGHT_CONFIG", str(config))
    monkeypatch.setenv("TILEWRIGHT_QUALITY", "60")
    settings = Settings()
    assert settings.quality == 60  # environment wins
    assert settings.dzi_tile_size == 510  # from the file
    assert settings.format_checkers == ["vips"]
    assert settings.tiff_tile_size == 256  # default


def test_missing_config_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TILEWRIGHT_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ValueError, match="not a file"):
        Settings()


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("TILEWRIGHT_QUALITY", "101")
    with pytest.raises(ValueError, match="quality"):
        Settings()


def test_readme_configuration_table_lists_every_setting():
    text = README.read_text()
    for line in settings_table().splitlines()[2:]:
        name = line.split("|")[1].strip()
        assert line in text, (
            f"README's configuration table is out of date for {name}: run `tilewright config --markdown`"
        )

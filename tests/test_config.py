"""config: one settings class; defaults < TOML file < environment; each value checked where it is declared;
every knob on docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from tilewright.config import GROUP_TITLES, Settings
from tilewright.config.markdown import group_of, settings_table
from tilewright.config.urls import (
    BROKER_SCHEMES,
    CACHE_SCHEMES,
    DATABASE_DIALECTS,
    RESULT_BACKEND_SCHEMES,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"


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


# -- the configuration page ----------------------------------------------------------------------


def test_configuration_page_lists_every_setting():
    text = CONFIGURATION.read_text()
    for line in settings_table().splitlines():
        name = line.split("|")[1].strip() if line.startswith("| `") else line
        assert line in text, f"docs/configuration.md is out of date for {name}: run `make docs`"


def test_every_setting_belongs_to_a_declared_group_and_every_group_has_settings():
    groups = [group_of(name) for name in Settings.model_fields]
    assert set(groups) == set(GROUP_TITLES)
    # declared group by group (a group's settings together), and the page's sections in the groups' order
    runs = [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    assert sorted(runs) == sorted(GROUP_TITLES)
    page = settings_table()
    assert [page.index(f"## {title}\n") for title in GROUP_TITLES.values()] == sorted(
        page.index(f"## {title}\n") for title in GROUP_TITLES.values()
    )


def test_every_setting_the_docs_name_exists_and_every_example_value_is_valid(monkeypatch):
    """`TILEWRIGHT_X=value` in README.md and docs/*.md: X is a setting, and the value is accepted."""
    not_settings = {"CONFIG", "TESTDATA", "FUNCTION_BLOB_PATH"}  # read by the CLI, the tests, function_app
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    examples = []
    for page in pages:
        for name in re.findall(r"TILEWRIGHT_([A-Z0-9_]+)", page.read_text()):
            if not name.endswith("_") and name not in not_settings:
                assert name.lower() in Settings.model_fields, f"{page.name} names TILEWRIGHT_{name}, not a setting"
        for name, value in re.findall(r"TILEWRIGHT_([A-Z0-9_]+)=('[^']*'|\"[^\"]*\"|[^\s`'\"]+)", page.read_text()):
            value = value.strip("'\"")
            if name not in not_settings and "…" not in value and "$" not in value:
                examples.append((page.name, name, value))
    assert len(examples) > 10
    for page, name, value in examples:
        monkeypatch.setenv(f"TILEWRIGHT_{name}", value)
        try:
            Settings()
        except ValidationError as exc:
            raise AssertionError(f"{page}: TILEWRIGHT_{name}={value} is refused: {exc}") from None
        monkeypatch.delenv(f"TILEWRIGHT_{name}")


# -- values checked where they are declared -------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_slide_pixels", 0),
        ("max_image_pixels", -1),
        ("max_upload_bytes", 0),
        ("time_limit_seconds", -1.0),
        ("tiff_tile_size", 250),  # TIFF tiles are multiples of 16
        ("tiff_tile_size", 8),
        ("dzi_tile_size", 9000),
        ("storage_chunk_bytes", 1024),
    ],
)
def test_sizes_and_limits_out_of_range_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_sizes_and_limits_in_range_are_kept():
    settings = Settings(tiff_tile_size=512, max_image_pixels=10_000, max_upload_bytes=1, time_limit_seconds=0.0)
    assert (settings.tiff_tile_size, settings.max_image_pixels, settings.time_limit_seconds) == (512, 10_000, 0.0)


GOOD_URLS = {
    "broker_url": [
        "redis://127.0.0.1:6379/0",
        "rediss://:secret@redis.example.org:6380/0",
        "amqp://user:password@rabbit:5672//",
        "sqla+postgresql://user@db/celery",
        "memory://",
        "redis://a:6379/0;redis://b:6379/0",  # kombu's fail-over list
        "",  # as it always was: an embedded server never uses it (Celery reports it when chosen)
    ],
    "result_backend": ["", "redis://127.0.0.1:6379/1", "rpc://", "db+sqlite:///results.db", "cache+memory://"],
    "cache_url": ["", "redis://127.0.0.1:6379/1", "rediss://cache:6380/0", "unix:///run/redis.sock"],
    "database_url": ["", "sqlite:////var/lib/tw/tilewright.db", "postgresql+psycopg://tw:pw@db:5432/tw"],
    "s3_endpoint_url": ["", "http://127.0.0.1:9000", "https://s3.eu-central-1.amazonaws.com"],
}
BAD_URLS = {
    "broker_url": ["localhost:6379", "http://127.0.0.1:6379", "redis://a;localhost"],
    "result_backend": ["redis", "nope://x"],
    "cache_url": ["127.0.0.1:6379", "memcached://cache:11211"],
    "database_url": ["tilewright.db", "postgres://tw@db/tw", "nosuchdb://x"],  # SQLAlchemy 2 has no `postgres`
    "s3_endpoint_url": ["127.0.0.1:9000", "s3://bucket", "http://"],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, values in GOOD_URLS.items() for v in values])
def test_urls_libraries_accept_are_kept(field, value):
    assert getattr(Settings(**{field: value}), field) == value


@pytest.mark.parametrize("field, value", [(f, v) for f, values in BAD_URLS.items() for v in values])
def test_urls_their_library_would_refuse_are_refused_at_start_up(field, value, monkeypatch):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_a_bad_url_setting_is_one_line_that_never_shows_its_password(monkeypatch):
    from tilewright.config import get_settings
    from tilewright.errors import ConfigError

    monkeypatch.setenv("TILEWRIGHT_BROKER_URL", "reddis://user:hunter2@broker:6379/0")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(caught.value)
    assert message.startswith("bad setting TILEWRIGHT_BROKER_URL: Value error, unknown scheme reddis://")
    assert "hunter2" not in message and "\n" not in message


def test_scheme_lists_are_the_libraries_own():
    """The copies in config.urls (kept there for start-up time) match what each library accepts."""
    import kombu.transport
    import redis
    import sqlalchemy.dialects
    from celery.app.backends import BACKEND_ALIASES

    assert {alias.lower() for alias in kombu.transport.TRANSPORT_ALIASES} == BROKER_SCHEMES
    assert set(BACKEND_ALIASES) == RESULT_BACKEND_SCHEMES
    assert set(sqlalchemy.dialects.__all__) <= DATABASE_DIALECTS
    for dialect in DATABASE_DIALECTS:
        sqlalchemy.dialects.registry.load(dialect)
    for scheme in CACHE_SCHEMES:
        redis.ConnectionPool.from_url(f"{scheme}://localhost/0" if scheme != "unix" else "unix:///tmp/redis.sock")
    with pytest.raises(ValueError):
        redis.ConnectionPool.from_url("memcached://cache:11211")

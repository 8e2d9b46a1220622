"""The extension points keep their promise: a throw-away reader, operation, output kind, job kind, store and
event source, each one class or function plus one registry line (docs/development.md says how), work end to
end through the same code paths as the built-in ones, with no other edit."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import pyvips
from fastapi.testclient import TestClient
from fsspec.implementations.memory import MemoryFileSystem
from pydantic import BaseModel, ConfigDict

from services import finished
from tilewright import formats, ops, storage
from tilewright.config import Settings
from tilewright.convert import convert
from tilewright.db import init_db
from tilewright.errors import InputError
from tilewright.events import sources as event_sources
from tilewright.events.parse import BlobEvent, EventError, EventSource, Parsed, load_json
from tilewright.formats import registry as readers
from tilewright.formats.base import Level, SlideReader
from tilewright.jobs import registry as jobs_registry
from tilewright.jobs import store
from tilewright.jobs.kind import Task, TaskContext
from tilewright.jobs.runner import execute
from tilewright.jobs.service import submit_job
from tilewright.outputs import WRITERS, Plan, PyramidWriter
from tilewright.recipes import chain_recipe, run_recipe
from tilewright.server import create_app
from tilewright.storage import Storage

# -- a reader: a toy raw format (magic, width, height, RGB bytes) --------------------------------------------

MAGIC = b"TWRAW1"


def write_raw(path: Path, width: int, height: int) -> Path:
    image = pyvips.Image.xyz(width, height)[0].cast("uchar")  # a gradient, so pixels can be compared
    rgb = image.bandjoin([image, image]).copy(interpretation="srgb")
    path.write_bytes(MAGIC + struct.pack("<II", width, height) + rgb.write_to_memory())
    return path


class RawReader(SlideReader):
    """One file plus one line in `formats.registry._BUILTIN` (here: the test's module and class)."""

    name = "twraw"
    suffixes = (".twraw",)

    @classmethod
    def check(cls, path: Path, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def __init__(self, path: Path, settings: Settings | None = None) -> None:
        super().__init__(path, settings)
        data = Path(path).read_bytes()
        width, height = struct.unpack("<II", data[len(MAGIC) : len(MAGIC) + 8])
        self._pixels = data[len(MAGIC) + 8 :]
        self.format = "twraw"
        self.levels = [Level(width, height, 1.0)]
        self.tiled = False
        self.tile_size = (width, height)

    def _level_image(self, level: int, sequential: bool) -> pyvips.Image:
        width, height = self.levels[0].width, self.levels[0].height
        return pyvips.Image.new_from_memory(self._pixels, width, height, 3, "uchar")


@pytest.fixture
def raw_reader(monkeypatch):
    monkeypatch.setitem(readers._BUILTIN, RawReader.name, f"{__name__}:RawReader")
    readers._suffixes.cache_clear()
    yield RawReader
    readers._suffixes.cache_clear()


def test_a_new_reader_is_detected_by_content_converted_and_accepted_for_upload(raw_reader, tmp_path):
    source = write_raw(tmp_path / "gradient.bin", 300, 200)  # no telling suffix: detection is by content
    settings = Settings(data_dir=tmp_path / "data")  # its name is in no setting: every reader is tried
    assert formats.detect(source, settings) is RawReader
    with formats.open_slide(source, settings) as reader:
        info = reader.info()
        assert (info.reader, info.format, info.width, info.height) == ("twraw", "twraw", 300, 200)
        assert reader.region(100, 50, 1, 1).getpoint(0, 0) == [100.0, 100.0, 100.0]
    result = convert(source, tmp_path / "out", "dzi", settings=settings)
    assert (result.width, result.height) == (300, 200) and Path(result.output).is_file()
    assert ".twraw" in readers.accepted_suffixes()  # what uploads and `tilewright import` accept follows


# -- an operation: one typed function plus one line in `ops.registry.OPS` ----------------------------------


def invert(image: pyvips.Image, keep_alpha: bool = True) -> pyvips.Image:
    """Negative of the image (its signature is its validation: `keep_alpha` must be a boolean)."""
    return image.invert() if not (keep_alpha and image.hasalpha()) else image[:-1].invert().bandjoin(image[-1])


@pytest.fixture
def invert_op(monkeypatch):
    monkeypatch.setitem(ops.OPS, "invert", ops.Op(invert))


def test_a_new_operation_is_parsed_validated_and_run_by_chains_and_recipes(invert_op, tmp_path, testdata):
    steps = ops.parse_chain(["resize=0.5", "invert"])
    assert [s.op for s in steps] == ["resize", "invert"]
    with pytest.raises(ops.OperationError, match="keep_alpha"):
        ops.parse_chain([{"op": "invert", "keep_alpha": "sometimes"}])
    source = testdata("jpeg-png/boxes.png")
    with ops.Source(source, Settings(data_dir=tmp_path)) as opened:
        (image,) = ops.run_chain(opened, ops.parse_chain(["invert"]))
        original = opened.full()
        assert image.getpoint(5, 5)[0] == 255 - original.getpoint(5, 5)[0]
    metadata = run_recipe(source, tmp_path / "out", chain_recipe(["invert", "format=png"], "negative"))
    assert metadata["outputs"][0]["file"] == "negative.png" and (tmp_path / "out" / "negative.png").is_file()


# -- an output kind: one `PyramidWriter` plus one line in `outputs.WRITERS` ----------------------------------


class FlatPngWriter(PyramidWriter):
    """The whole image as one PNG (a 'pyramid' of one level)."""

    kind = "flatpng"
    tile_size_setting = "tiff_tile_size"

    @staticmethod
    def normalise_output(output: Path) -> Path:
        return output.with_name(output.name + ".png")

    def final_paths(self) -> list[Path]:
        return [self.output]

    def plan(self, width: int, height: int) -> Plan:
        return Plan(self.kind, [self.output], [(width, height)], 1)

    def write(self, image: pyvips.Image, staging: Path) -> list[Path]:
        target = staging / self.output.name
        image.pngsave(str(target))
        return [target]


def test_a_new_output_kind_is_converted_to_with_atomic_publishing(monkeypatch, tmp_path, testdata):
    monkeypatch.setitem(WRITERS, "flatpng", FlatPngWriter)
    result = convert(testdata("jpeg-png/boxes.png"), tmp_path / "boxes", "flatpng", settings=Settings())
    written = pyvips.Image.new_from_file(result.output)
    assert (written.width, written.height) == (result.width, result.height)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.png"]  # published; no staging left


# -- a job kind: one module (Params, check, run) plus one line in `jobs.registry.TASKS` ----------------------


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    times: int = 1


def check_echo(params: EchoParams, settings: Settings) -> tuple[dict[str, Any], str]:
    return params.model_dump(), ""


def run_echo(ctx: TaskContext) -> dict[str, Any]:
    params = EchoParams.model_validate(ctx.params)
    ctx.progress(0.5, "echoing")
    return {"echo": " ".join([params.text] * params.times)}


def test_a_new_job_kind_is_validated_by_its_model_queued_run_and_recorded(monkeypatch, tmp_path):
    monkeypatch.setitem(jobs_registry.TASKS, "echo", Task(EchoParams, check_echo, run_echo, "say it again"))
    settings = Settings(data_dir=tmp_path)
    init_db(settings)
    with pytest.raises(InputError, match="unknown echo parameters: colour"):
        submit_job(settings, None, "echo", {"text": "hi", "colour": "red"})
    job, created = submit_job(settings, None, "echo", {"text": "hi", "times": 2})
    again, created_again = submit_job(settings, None, "echo", {"text": "hi", "times": 2})
    assert created and not created_again and again["id"] == job["id"]  # idempotent like every kind
    assert execute(job["id"], settings).status == "succeeded"  # the runner both executors call
    done = store.get(settings, job["id"])
    assert done["state"] == "succeeded" and done["outputs"] == {"echo": "hi hi"}


# -- a store: one `Storage` subclass plus one line in `storage.STORES` (here fsspec's in-memory filesystem) --


class MemoryStorage(Storage):
    """Blobs in fsspec's memory filesystem: `mem://CONTAINER/KEY`."""

    scheme = "mem"

    @classmethod
    def from_settings(cls, settings: Settings, root: Path | None = None) -> MemoryStorage:
        return cls(settings)

    def __init__(self, settings: Settings) -> None:
        super().__init__(MemoryFileSystem(), settings, "")


def test_a_new_store_is_opened_by_url_and_publishes_with_the_manifest_last(monkeypatch, tmp_path):
    monkeypatch.setitem(storage.STORES, "mem", f"{__name__}:MemoryStorage")
    settings = Settings(data_dir=tmp_path)
    store, key = storage.open_url("mem://extending/pyramids/one", settings)
    assert isinstance(store, MemoryStorage) and key == "extending/pyramids/one"
    folder = tmp_path / "pyramid"
    (folder / "slide_files" / "0").mkdir(parents=True)
    (folder / "slide_files" / "0" / "0_0.jpeg").write_bytes(b"tile")
    (folder / "slide.dzi").write_text("<Image/>")
    store.publish_pyramid(folder, key, source={"url": "test"})
    manifest = store.read_manifest(key)
    assert manifest is not None and manifest["file_count"] == 2
    assert store.read_bytes(storage.join_key(key, "slide_files/0/0_0.jpeg")) == b"tile"
    assert store.verify_manifest(key) == []


# -- an event source: one module's `SOURCE` plus one line in `events.sources.SOURCES` ------------------------


def _parse_plain(headers: dict[str, str], body: bytes) -> Parsed:
    """`{"blobs": ["URL", ...]}`: the simplest webhook there is."""
    payload = load_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("blobs"), list):
        raise EventError('expected {"blobs": [URL, ...]}')
    return Parsed(blobs=[BlobEvent(url=str(url), origin="plain") for url in payload["blobs"]])


PLAIN = EventSource(name="plain", description="a list of blob URLs", parse=_parse_plain)


def test_a_new_event_source_is_served_as_a_webhook_and_its_blob_converted(monkeypatch, tmp_path, testdata):
    monkeypatch.setattr(event_sources, "SOURCES", (*event_sources.SOURCES, PLAIN))
    settings = Settings(data_dir=tmp_path, concurrency=1)
    blob = settings.resolved_storage_root() / "incoming" / "boxes.tiff"
    blob.parent.mkdir(parents=True)
    shutil.copyfile(testdata("generic-tiff/boxes.tiff"), blob)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert "/events/plain" in client.get("/openapi.json").json()["paths"]  # documented like the others
        assert client.post("/events/plain", content=b"[]").status_code == 400  # its parser's error is a 400
        answer = client.post("/events/plain", json={"blobs": [f"file://{blob}"]})
        assert answer.status_code == 200, answer.text
        (submitted,) = answer.json()["results"]
        assert submitted["status"] == "submitted"
        assert finished(client, submitted["job"])["state"] == "succeeded"
    published = sorted(p.name for p in (settings.resolved_storage_root() / "incoming").rglob("*.dzi"))
    assert published == ["boxes.dzi"]

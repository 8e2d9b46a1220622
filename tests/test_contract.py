"""Contract fuzzing: schemathesis generates requests for every operation of the app's own `/openapi.json`
(valid ones from the schema, and invalid ones around it) and checks each answer: no 5xx, the body and
headers as the schema says, every status code documented, schema-valid requests accepted (issue 13).

The budget here is bounded for `make test` (TILEWRIGHT_FUZZ_EXAMPLES per operation, 15 by default);
`make fuzz` runs the same test with a larger one. The app runs for real (its lifespan, the embedded
executor, an uploaded slide from shared/testdata/svs/cmu-1-small-region.svs), in this process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conftest import TESTDATA
from tilewright.config import Settings
from tilewright.server import create_app

EXAMPLES = int(os.environ.get("TILEWRIGHT_FUZZ_EXAMPLES", "15"))
#: operations whose body is an image: the schema can say "bytes", not "an image tilewright decodes", so a
#: schema-valid body is often no image at all and its 400/415 is the right answer. Every other check still
#: runs on them (no 5xx, documented statuses, conforming bodies); tests/test_hostile_corpus.py sends them
#: real damaged images.
CONTENT_DECIDES = {("POST", "/images"), ("POST", "/resize"), ("POST", "/api/resize")}
#: operations whose body carries an operation chain (`"resize=0.5"`, `{"op": "blur", "sigma": 2}`) or a job
#: kind's parameters: a small language the schema describes as strings and objects, checked step by step
#: (a 4xx naming the bad step), so schema-valid is not the same as valid there; the other checks still run
SCHEMA_CANNOT_SAY = CONTENT_DECIDES | {("POST", "/process"), ("POST", "/items/"), ("POST", "/jobs")}
#: and a region's w x h over TILEWRIGHT_MAX_REGION_PIXELS: a bound on a product of two parameters, which a
#: schema cannot state (each side alone may be up to the largest side)
SCHEMA_CANNOT_SAY |= {("GET", "/images/{image_id}/region")}
#: and a storage URL, whose scheme must name a store configured on this server (az://, s3://, a path)
SCHEMA_CANNOT_SAY |= {("GET", "/storage/pyramid")}
_DATA = Path(tempfile.mkdtemp(prefix="tilewright-contract-"))
APP = create_app(
    Settings(
        data_dir=_DATA / "data",
        input_roots=[str(TESTDATA)],
        events_key="fuzz-key",  # the event routes are open to whoever has the key: generated requests have not
        time_limit_seconds=60,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def client():
    """One session with the app's lifespan (database, executor, tile service) entered once, for every request."""
    with asgi.get_client(APP) as session:
        slide = TESTDATA / "svs/cmu-1-small-region.svs"
        with open(slide, "rb") as handle:  # one real image, so that ids found in listings lead somewhere
            assert session.post("/images", files={"file": (slide.name, handle)}).status_code < 300
        yield session
    shutil.rmtree(_DATA, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: a failure in CI is a failure here
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(case, client):
    key = (case.operation.method.upper(), case.operation.path)
    case.call_and_validate(
        session=client, excluded_checks=[positive_data_acceptance] if key in SCHEMA_CANNOT_SAY else []
    )

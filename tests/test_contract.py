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

from conftest import TESTDATA
from tilewright.config import Settings
from tilewright.server import create_app

EXAMPLES = int(os.environ.get("TILEWRIGHT_FUZZ_EXAMPLES", "15"))
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
    case.call_and_validate(session=client)

"""`GET /images` search and pages (a pydantic query model, X-Total-Count), names kept as uploaded, and what
the OpenAPI document declares of them and of `GET /images/{id}/info` (mpp, objective power, associated)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tilewright.config import Settings
from tilewright.server import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory, testdata):
    settings = Settings(data_dir=tmp_path_factory.mktemp("images"))
    body = testdata("jpeg-png/boxes.png").read_bytes()
    with TestClient(create_app(settings)) as client:
        for name, collection in (("Ünïcode name (1).png", "a"), ("plain_50%.png", "b"), ("other.png", "c")):
            answer = client.post("/images", params={"filename": name, "collection": collection}, content=body)
            assert answer.status_code == 201, answer.text
        yield client


def test_names_are_kept_as_uploaded_and_stored_safely(client):
    (record,) = client.get("/images", params={"collection": "a"}).json()
    assert record["name"] == "Ünïcode name (1).png" and record["filename"] == "n_code_name_1_.png"


def test_search_and_pages(client):
    everything = client.get("/images")
    assert everything.headers["x-total-count"] == "3" and len(everything.json()) == 3
    first, second = (client.get("/images", params={"limit": 2, "offset": o}) for o in (0, 2))
    assert first.headers["x-total-count"] == second.headers["x-total-count"] == "3"
    ids = [r["id"] for r in first.json() + second.json()]
    assert sorted(ids) == sorted(r["id"] for r in everything.json())  # no image twice, none left out
    found = client.get("/images", params={"q": "CODE NAME (1"})  # any case (of ASCII letters on SQLite)
    assert [r["name"] for r in found.json()] == ["Ünïcode name (1).png"]
    assert [r["name"] for r in client.get("/images", params={"q": "Ünï"}).json()] == ["Ünïcode name (1).png"]
    assert [r["name"] for r in client.get("/images", params={"q": "50%"}).json()] == ["plain_50%.png"]
    assert client.get("/images", params={"q": "5_%"}).json() == []  # % and _ are letters here, not wildcards
    assert client.get("/images", params={"q": "other", "collection": "a"}).headers["x-total-count"] == "0"
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"q": "x" * 201}):
        refused = client.get("/images", params=bad)
        assert refused.status_code == 422 and refused.json()["error"] == "invalid request", bad


def test_openapi_declares_the_query_the_total_and_the_info(client):
    schema = client.get("/openapi.json").json()
    listing = schema["paths"]["/images"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"collection", "q", "limit", "offset"}
    assert "X-Total-Count" in listing["responses"]["200"]["headers"] and "422" in listing["responses"]
    info = schema["paths"]["/images/{image_id}/info"]["get"]["responses"]
    assert info["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ImageInfo")
    assert {"400", "404"} <= set(info)
    fields = schema["components"]["schemas"]["ImageInfo"]["properties"]
    assert {"mpp_x", "mpp_y", "objective_power", "associated_images", "associated", "tiles"} <= set(fields)
    assert {"401", "404"} <= set(schema["paths"]["/images/{image_id}"]["delete"]["responses"])

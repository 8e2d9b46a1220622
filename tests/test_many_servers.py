"""Many servers (issue 15): two real `tilewright serve` processes sharing PostgreSQL, the Redis tile cache and
a data folder, as two hosts behind a load balancer would.

An upload through one is listed, converted (by whichever server's executor claims the job: once) and served
through the other; both answer the same ETags for its tiles; its progress streams (SSE) through either.
Uses shared/testdata/svs/cmu-1-small-region.svs.
"""

from __future__ import annotations

import httpx

from services import clean_env, free_port, start_server, wait_until
from tilewright.jobs.models import FINISHED

SLIDE = "svs/cmu-1-small-region.svs"


def test_two_servers_share_one_database_cache_and_folder(tmp_path, pg_database, redis_server, testdata):
    data = tmp_path / "data"
    env = clean_env(
        TILEWRIGHT_DATA_DIR=str(data),
        TILEWRIGHT_DATABASE_URL=pg_database,
        TILEWRIGHT_CACHE_URL=redis_server,
        TILEWRIGHT_CONCURRENCY="1",
    )
    ports = [free_port(), free_port()]
    servers = [start_server(env, port, tmp_path / f"serve{i}.log") for i, port in enumerate(ports)]
    try:
        a, b = (httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) for port in ports)
        slide = testdata(SLIDE)
        with open(slide, "rb") as handle:
            uploaded = a.post("/images", files={"file": (slide.name, handle)})
        assert uploaded.status_code == 201, uploaded.text
        image, job = uploaded.json()["image"], uploaded.json()["job"]
        assert image["id"] in [i["id"] for i in b.get("/images").json()]  # listed through the other

        # progress streams through B while the job runs wherever it was claimed
        with b.stream("GET", f"/jobs/{job['id']}/events") as events:
            lines = [line for line in events.iter_lines() if line.startswith("event:")]
        assert lines[-1] == "event: end", lines

        done = wait_until(lambda: (j := b.get(f"/jobs/{job['id']}").json())["state"] in FINISHED and j, 120, "the job")
        # both servers' dispatchers saw it queued; the conditional claim let one of them run it, once
        assert done["state"] == "succeeded" and done["attempts"] == 1, done

        tile = f"/images/{image['id']}_files/8/0_0.jpeg"
        answers = [client.get(tile) for client in (a, b)]
        assert [r.status_code for r in answers] == [200, 200]
        assert answers[0].headers["etag"] == answers[1].headers["etag"]
        assert answers[0].content == answers[1].content
        dzi = [client.get(f"/images/{image['id']}.dzi") for client in (a, b)]
        assert dzi[0].text == dzi[1].text and dzi[0].headers["etag"] == dzi[1].headers["etag"]
        # a conditional request answered by the other server: the ETag means the same thing on both
        again = b.get(tile, headers={"If-None-Match": answers[0].headers["etag"]})
        assert again.status_code == 304
    finally:
        for server in servers:
            server.stop()

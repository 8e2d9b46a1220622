"""Property-based tests (hypothesis) for the parsers every request goes through (issue 13): the IIIF URL
parser, operation chains, event payloads and the settings. Whatever the input, each either answers
within its contract or raises its own error type (a 4xx), never anything else (a 5xx).

The budget is bounded for `make test`; `make fuzz` sets TILEWRIGHT_FUZZ_EXAMPLES higher.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.datastructures import Headers

from tilewright.config import Settings
from tilewright.errors import ConfigError, InputError
from tilewright.events.sources import SOURCES
from tilewright.events.sources.eventgrid import parse_eventgrid
from tilewright.events.sources.s3 import parse_s3
from tilewright.ops import MAX_STEPS, OPS, OperationError, parse_chain
from tilewright.server import iiif

EXAMPLES = int(os.environ.get("TILEWRIGHT_FUZZ_EXAMPLES", "200"))
budget = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LIMITS = {"max_width": 4096, "max_height": 4096, "max_area": 4096 * 4096}
sizes = st.integers(min_value=1, max_value=200_000)
numbers = st.one_of(
    st.integers(min_value=0, max_value=10**10).map(str),
    st.floats(min_value=0, max_value=1e4, allow_nan=False).map(lambda f: f"{f:g}"),
)
regions = st.one_of(
    st.sampled_from(["full", "square"]),
    st.lists(numbers, min_size=4, max_size=4).map(",".join),
    st.lists(numbers, min_size=4, max_size=4).map(lambda v: "pct:" + ",".join(v)),
    st.text(max_size=30),
)
iiif_sizes = st.one_of(
    st.sampled_from(["max", "^max"]),
    st.tuples(st.sampled_from(["", "^", "!", "^!"]), numbers | st.just(""), numbers | st.just("")).map(
        lambda t: f"{t[0]}{t[1]},{t[2]}"
    ),
    numbers.map(lambda n: f"pct:{n}"),
    st.text(max_size=20),
)
rotations = st.one_of(st.tuples(st.sampled_from(["", "!"]), numbers).map("".join), st.text(max_size=10))
qualities = st.one_of(
    st.tuples(st.sampled_from(iiif.QUALITIES), st.sampled_from(list(iiif.FORMATS))).map(".".join),
    st.text(max_size=15),
)


@budget
@given(regions, iiif_sizes, rotations, qualities, sizes, sizes)
def test_iiif_parser_answers_within_the_image_and_the_limits_or_refuses(region, size, rotation, qf, width, height):
    try:
        request = iiif.parse(region, size, rotation, qf, width, height, **LIMITS)
    except iiif.IiifError:
        return  # a 400
    assert 0 <= request.x < width and 0 <= request.y < height
    assert 1 <= request.w <= width - request.x and 1 <= request.h <= height - request.y
    assert 1 <= request.out_w <= LIMITS["max_width"] and 1 <= request.out_h <= LIMITS["max_height"]
    assert request.out_w * request.out_h <= LIMITS["max_area"]
    assert 0 <= request.rotation < 360 and request.media_type.startswith("image/")
    # the canonical form parses to the same request (it is the cache key)
    parts = request.canonical().split("/")
    again = iiif.parse(parts[0], parts[1], parts[2], parts[3], width, height, **LIMITS)
    assert again == request


values: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
step_strings = st.tuples(st.sampled_from([*OPS, "nope", ""]), st.text(max_size=15)).map(
    lambda t: f"{t[0]}={t[1]}" if t[1] else t[0]
)
step_maps = st.fixed_dictionaries(
    {"op": st.sampled_from([*OPS, "nope"])}, optional={"width": values, "scale": values, "sigma": values}
)
chains = st.lists(st.one_of(step_strings, step_maps, values), max_size=8)


@budget
@given(chains)
def test_a_chain_is_checked_into_steps_or_refused_with_the_bad_step_named(chain):
    try:
        steps = parse_chain(chain)
    except OperationError as exc:
        assert exc.index is not None and 0 <= exc.index < max(len(chain), 1)
        assert str(exc)
        return
    assert len(steps) == len(chain) and all(step.op in OPS for step in steps)
    assert parse_chain([step.to_dict() for step in steps]) == steps  # a checked chain checks the same again


def test_a_chain_over_the_limit_is_refused_before_any_step_is_read():
    with pytest.raises(OperationError, match=f"at most {MAX_STEPS}"):
        parse_chain([object()] * (MAX_STEPS + 1))  # not even a step: never looked at


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
blob_url = st.from_regex(
    r"https://[a-z]{3,8}\.blob\.core\.windows\.net/[a-z]{3,8}/[a-zA-Z0-9_./-]{1,30}", fullmatch=True
)
eventgrid_events = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.text(max_size=10),
            "eventType": st.sampled_from(
                ["Microsoft.Storage.BlobCreated", "Microsoft.Storage.BlobDeleted", "Other", ""]
            ),
            "subject": st.text(max_size=30),
            "data": st.fixed_dictionaries(
                {}, optional={"url": blob_url | st.text(max_size=20), "contentLength": values}
            ),
        }
    ),
    max_size=4,
)
s3_records = st.fixed_dictionaries(
    {
        "Records": st.lists(
            st.fixed_dictionaries(
                {
                    "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", ""]),
                    "s3": st.fixed_dictionaries(
                        {
                            "bucket": st.fixed_dictionaries({"name": st.text(max_size=10)}),
                            "object": st.fixed_dictionaries({"key": st.text(max_size=30)}, optional={"size": values}),
                        }
                    ),
                }
            ),
            max_size=4,
        )
    }
)


@budget
@given(st.one_of(eventgrid_events, json_values))
def test_event_grid_payloads_parse_or_are_refused_as_input(payload):
    try:
        parsed = parse_eventgrid(payload)
    except InputError:
        return
    for blob in parsed.blobs:
        assert blob.url and isinstance(blob.url, str)


@budget
@given(st.one_of(s3_records, json_values))
def test_s3_payloads_parse_or_are_refused_as_input(payload):
    try:
        parsed = parse_s3(payload)
    except InputError:
        return
    for blob in parsed.blobs:
        assert blob.url and isinstance(blob.url, str)


@budget
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_every_event_source_takes_any_bytes_as_input_or_refuses_them(body):
    for source in SOURCES:
        try:
            source.parse(Headers({"content-type": "application/json"}), body)
        except InputError:
            pass


setting_values = st.one_of(st.text(max_size=20), st.integers().map(str), st.sampled_from(["", "-1", "1e99", "[]", "{"]))


@budget
@given(st.sampled_from(sorted(Settings.model_fields)), setting_values)
def test_a_setting_from_the_environment_is_taken_or_refused_in_one_line(name, value):
    try:
        Settings(**{name: value})
    except (ValidationError, ConfigError, ValueError) as exc:
        assert str(exc)

"""A JSON object naming a key twice means two things (Python keeps the last value, another
reader the first): plan files and everything read from a bucket refuse it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from cloudops.aws.s3_json import parse_json_object
from cloudops.errors import InputError
from cloudops.release_plan import read_plan
from cloudops.text import json_without_duplicate_keys


class _Doc(BaseModel):
    release: str


def test_an_object_with_a_key_twice_is_refused_at_any_depth() -> None:
    assert json_without_duplicate_keys('{"a": {"b": 1, "c": 2}}') == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ValueError, match="twice"):
        json_without_duplicate_keys('{"a": 1, "a": 2}')
    with pytest.raises(ValueError, match="twice"):
        json_without_duplicate_keys('[{"x": {"k": 1, "k": 1}}]')


def test_a_bucket_object_with_a_key_twice_is_not_json() -> None:
    assert parse_json_object(b'{"release": "1"}', _Doc) == (_Doc(release="1"), None)
    assert parse_json_object(b'{"release": "1", "release": "2"}', _Doc) == (None, "not JSON")


def test_a_plan_file_with_a_key_twice_is_refused_with_exit_2(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"format": 1, "plan_hash": "sha256:' + "a" * 64 + '", "plan_hash": "x"}')
    with pytest.raises(InputError, match=f"plan file {plan} is not JSON"):
        read_plan(plan)

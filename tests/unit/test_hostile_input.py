"""Hostile input: whatever bytes arrive, parsers answer with their own clear error type,
never a crash, a traceback or a hang."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudops.oci import ManifestError, parse_manifest
from cloudops.pipeline.model import PipelineError, parse_pipeline
from cloudops.refs import ReferenceError, parse_reference
from tests.support.run import assert_clean_failure, cloudops

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=5),
    max_leaves=25,
)
pipeline_keys = st.sampled_from(
    [
        "accounts",
        "stages",
        "images",
        "deployment_package",
        "config_root",
        "source_repositories",
        "endpoints",
        "x",
    ]
)
account = st.fixed_dictionaries(
    {},
    optional={
        "account_id": st.one_of(st.text(max_size=14), st.integers(), st.just("111111111111")),
        "region": st.one_of(st.text(max_size=12), st.just("us-west-2")),
        "builds_images": yaml_values,
        "bucket": yaml_values,
        "credentials": yaml_values,
    },
)


@settings(max_examples=150)
@given(
    st.dictionaries(
        pipeline_keys, st.one_of(yaml_values, st.dictionaries(st.text(max_size=8), account, max_size=3))
    )
)
def test_pipeline_documents_parse_or_fail_with_pipeline_error(doc: dict[str, object]) -> None:
    try:
        parse_pipeline(yaml.safe_dump(doc), Path("fuzz.yaml"))
    except PipelineError as error:
        assert str(error).startswith("fuzz.yaml")


@settings(max_examples=150)
@given(st.text(max_size=400))
def test_arbitrary_text_as_pipeline_yaml(text: str) -> None:
    with contextlib.suppress(PipelineError):
        parse_pipeline(text, Path("fuzz.yaml"))


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]\n",  # a self-referencing alias
        "x: " + "[" * 5000 + "]" * 5000 + "\n",  # deep nesting
        "accounts: !!python/object/apply:os.system ['echo hacked']\nstages: []\n",  # unsafe tags
        "\x00\x01\x02binary",
        "accounts:\n"
        + "".join(f"  a{i}: {{account_id: '{i:012d}', region: us-west-2}}\n" for i in range(2000)),
    ],
    ids=["alias-loop", "deep-nesting", "python-tag", "binary", "2000-accounts"],
)
def test_hostile_pipeline_files(text: str) -> None:
    with pytest.raises(PipelineError):
        parse_pipeline(text, Path("evil.yaml"))


def test_deeply_nested_and_wrongly_typed_manifests() -> None:
    deep = (
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}"
    )
    for raw in (
        deep,
        json.dumps({"schemaVersion": "2", "config": {}, "layers": []}).encode(),
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": [],
                "layers": {},
            }
        ).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.unknown+json"}).encode(),
        b"\xff\xfe\x00garbage",
    ):
        with pytest.raises(ManifestError):
            parse_manifest(raw)


@given(st.binary(max_size=500))
def test_arbitrary_bytes_as_manifest(raw: bytes) -> None:
    with contextlib.suppress(ManifestError):
        parse_manifest(raw)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_arbitrary_unicode_as_reference(text: str) -> None:
    with contextlib.suppress(ReferenceError):
        parse_reference(text)


def test_cli_with_a_hostile_pipeline_file_exits_2(tmp_path: Path) -> None:
    evil = tmp_path / "pipeline.yaml"
    evil.write_bytes(b"accounts: !!python/object/apply:os.system ['touch /tmp/cloudops-pwned']\n")
    result = cloudops("history", "--pipeline", str(evil))
    assert_clean_failure(result, 2, "evil" if False else str(evil))
    assert not Path("/tmp/cloudops-pwned").exists()


def test_fuzz_target_runs_clean_for_a_bounded_number_of_inputs() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "tests/fuzz/fuzz_parsers.py", "--runs", "1500"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no unexpected exception" in result.stdout

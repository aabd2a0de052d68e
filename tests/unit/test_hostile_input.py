"""Hostile input: whatever bytes arrive, parsers answer with their own clear error type,
never a crash, a traceback or a hang."""

from __future__ import annotations

import contextlib
import json
import re
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


# --- YAML aliases: a few hundred bytes that stand for billions of nodes -------------------


def _billion_laughs(levels: int = 9, fan: int = 9, *, merge: bool = False) -> str:
    """``levels`` x ``fan`` nested aliases: 9 x 9 stands for 9**9 (387 million) nodes."""
    if merge:  # the same through merge keys, in mappings
        lines = ["l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(fan)) + "}"]
        for level in range(1, levels + 1):
            inner = ", ".join(f"m{i}: {{<<: *l{level - 1}}}" for i in range(fan))
            lines.append(f"l{level}: &l{level} {{{inner}}}")
        return "\n".join(lines) + "\n"
    lines = ["l0: &l0 [" + ", ".join(["lol"] * fan) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


_BOUNDED_CHILD = """
import resource, sys
from pathlib import Path
# A ceiling, so that a loader that does expand the aliases fails here, not on the machine.
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
kind, path = sys.argv[1], Path(sys.argv[2])
try:
    if kind == "pipeline":
        from cloudops.pipeline.model import load_pipeline
        load_pipeline(path)
    else:
        from cloudops.release import load_release
        load_release(path)
except Exception as error:
    print(type(error).__name__, getattr(error, "kind", "?"), str(error)[:300])
# VmHWM, not ru_maxrss: Linux carries the parent's peak across fork and exec into
# ru_maxrss, so a large pytest parent would be measured instead of this child.
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
print("peak-kib", hwm.split()[1])
"""


@pytest.mark.parametrize("kind", ["pipeline", "release"])
@pytest.mark.parametrize("merge", [False, True], ids=["aliases", "merge-keys"])
def test_billion_laughs_is_refused_quickly_and_small(tmp_path: Path, kind: str, merge: bool) -> None:
    """Refused with an input error naming the file, in a child process whose memory is
    measured and capped (expanding the aliases would need gigabytes, or the timeout)."""
    import subprocess
    import sys

    text = _billion_laughs(merge=merge)
    if kind == "release":
        text += "release: *l9\n"  # load_release turns the release name into a string
    path = tmp_path / f"laughs-{kind}.yaml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDED_CHILD, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    first, peak = result.stdout.splitlines()[0], result.stdout.splitlines()[-1]
    error = "PipelineError" if kind == "pipeline" else "InputError"
    assert first.startswith(f"{error} input {path}"), result.stdout
    assert "aliases expand to more than" in first
    assert int(peak.split()[1]) < 250 * 1024, peak  # KiB: imports only, no expansion


def test_billion_laughs_in_process_is_a_pipeline_error() -> None:
    with pytest.raises(PipelineError, match="aliases expand to more than"):
        parse_pipeline(_billion_laughs(), Path("laughs.yaml"))
    with pytest.raises(PipelineError, match="alias loop"):
        parse_pipeline("accounts: &a {qa: *a}\nstages: []\n", Path("loop.yaml"))


def test_cli_refuses_a_billion_laughs_pipeline_with_exit_2(tmp_path: Path) -> None:
    evil = tmp_path / "pipeline.yaml"
    evil.write_text(_billion_laughs())
    result = cloudops("history", "--pipeline", str(evil), timeout=60)
    assert_clean_failure(result, 2, str(evil), "aliases expand")


def test_a_few_honest_aliases_still_load() -> None:
    text = (
        "accounts:\n"
        "  build: &base {account_id: '111111111111', region: us-west-2, builds_images: true}\n"
        "  qa: {<<: *base, account_id: '222222222222', builds_images: false}\n"
        "stages: &stages [build, qa]\n"
    )
    loaded = parse_pipeline(text, Path("pipeline.yaml"))
    assert loaded.accounts["qa"].region == "us-west-2" and not loaded.accounts["qa"].builds_images


def test_an_oversized_pipeline_file_is_refused_unread(tmp_path: Path) -> None:
    from cloudops.pipeline.model import load_pipeline

    big = tmp_path / "pipeline.yaml"
    big.write_text("# padding\n" * 200_000)
    with pytest.raises(PipelineError, match="larger than"):
        load_pipeline(big)


# --- YAML scalars: a value too long to construct, or one no constructor can make -----------

_SCALARS = {
    "5000-digit-int": "1" * 5000,  # past Python's int digit limit: a bare ValueError
    "sexagesimal": ":".join(["59"] * 100_000),  # 300 KB, quadratic to construct
    "long-string": "'" + "x" * 5000 + "'",  # any value past the bound, quoted or not
    "bad-date": "2001-13-40",  # a timestamp the resolver takes, datetime refuses
    "4000-digit-key": "{" + "9" * 4000 + ": 1}",  # under the bound, still under the digit limit
}


@pytest.mark.parametrize("kind", sorted(_SCALARS))
def test_hostile_scalars_are_input_errors_naming_the_file(tmp_path: Path, kind: str) -> None:
    import time

    from cloudops.errors import InputError
    from cloudops.release import load_release

    value = _SCALARS[kind]
    started = time.monotonic()
    if kind == "4000-digit-key":  # loads; the pipeline's own validation refuses it
        with pytest.raises(PipelineError, match=r"^evil\.yaml"):
            parse_pipeline(f"accounts: {value}\nstages: []\n", Path("evil.yaml"))
    else:
        with pytest.raises(PipelineError, match=r"^evil\.yaml(:\d+)?: .*(longer than 4096|cannot be read)"):
            parse_pipeline(f"accounts:\n  qa: {{account_id: {value}}}\nstages: [qa]\n", Path("evil.yaml"))
        release = tmp_path / "release.yaml"
        release.write_text(f"release: {value}\npackage: {{version: '1'}}\n")
        with pytest.raises(InputError, match=f"^{re.escape(str(release))}"):
            load_release(release)
    assert time.monotonic() - started < 2


def test_cli_with_a_5000_digit_int_in_pipeline_yaml_exits_2(tmp_path: Path) -> None:
    evil = tmp_path / "pipeline.yaml"
    evil.write_text(f"accounts:\n  qa: {{account_id: {'1' * 5000}}}\nstages: [qa]\n")
    result = cloudops("history", "--pipeline", str(evil))
    assert_clean_failure(result, 2, str(evil))
    assert "internal error" not in result.stderr


# --- `history --since`: a span past what a date can hold ------------------------------------


@pytest.mark.parametrize("since", ["99999999999d", "9999999w", "999999999999999999999999m", "1" * 5000 + "h"])
def test_since_past_the_year_1_is_an_input_error(since: str) -> None:
    from cloudops.errors import InputError
    from cloudops.pipeline.history import parse_since

    with pytest.raises(InputError, match="reaches back before the year 1"):
        parse_since(since)


def test_cli_history_since_overflow_exits_2(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "accounts:\n"
        "  build: {account_id: '111111111111', region: us-west-2, builds_images: true}\n"
        "  qa: {account_id: '222222222222', region: us-west-2}\n"
        "stages: [build, qa]\n"
    )
    result = cloudops("history", "--pipeline", str(pipeline), "--since", "99999999999d")
    assert_clean_failure(result, 2, "--since", "before the year 1")
    assert "internal error" not in result.stderr

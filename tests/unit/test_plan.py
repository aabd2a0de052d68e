"""The copy planner is pure: these tests need no registry."""

from __future__ import annotations

import json

from cloudops.copy.plan import (
    CopyRequest,
    DestinationState,
    ImageInput,
    ImageStatus,
    Planner,
    SourceImage,
    plan_copy,
    walk_manifests,
)
from cloudops.oci import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageIndex,
    ImageManifest,
    Manifest,
    parse_manifest,
)
from cloudops.refs import parse_reference


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def _manifest(*blobs: int, media_type: str = DOCKER_MANIFEST) -> ImageManifest:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": "c", "digest": _digest(blobs[0]), "size": 1},
            "layers": [{"mediaType": "l", "digest": _digest(b), "size": b * 10} for b in blobs[1:]],
        }
    ).encode()
    manifest = parse_manifest(raw)
    assert isinstance(manifest, ImageManifest)
    return manifest


def _index(*children: ImageManifest) -> ImageIndex:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": c.digest, "size": len(c.raw)} for c in children
            ],
        }
    ).encode()
    index = parse_manifest(raw)
    assert isinstance(index, ImageIndex)
    return index


def _input(
    src: str, dst: str, root: Manifest, children: tuple[Manifest, ...] = (), **state: object
) -> ImageInput:
    manifests = walk_manifests(root, {c.digest: c for c in children})
    request = CopyRequest(parse_reference(src), parse_reference(dst))
    return ImageInput(request, root.digest, DestinationState(**state), SourceImage(root, manifests))  # type: ignore[arg-type]


def test_up_to_date_image_plans_nothing() -> None:
    image = _manifest(1, 2)
    plan = plan_copy([_input("a.io/x:1", "b.io/x:1", image, tag_digest=image.digest)])
    assert plan.images[0].status is ImageStatus.UP_TO_DATE
    assert plan.transfers == () and plan.images[0].pushes == ()


def test_tag_conflict_is_refused_only_when_tags_may_not_move() -> None:
    image = _manifest(1, 2)
    inputs = [_input("a.io/x:1", "b.io/x:1", image, tag_digest=_digest(99))]
    assert plan_copy(inputs, allow_tag_move=False).images[0].status is ImageStatus.TAG_CONFLICT
    moved = plan_copy(inputs, allow_tag_move=True).images[0]
    assert moved.status is ImageStatus.COPY and moved.current_digest == _digest(99)


def test_shared_blobs_cross_once_then_mount_between_repositories() -> None:
    first, second = _manifest(1, 2, 3), _manifest(4, 2, 3)
    plan = plan_copy(
        [_input("a.io/ep/one:1", "b.io/ep/one:1", first), _input("a.io/ep/two:1", "b.io/ep/two:1", second)]
    )
    uploads = [t for t in plan.transfers if t.mount_from is None]
    mounts = [t for t in plan.transfers if t.mount_from is not None]
    assert sorted(t.digest for t in uploads) == sorted(_digest(n) for n in (1, 2, 3, 4))
    assert {(t.digest, t.mount_from, t.after) for t in mounts} == {
        (_digest(2), "ep/one", ("b.io", "ep/one", _digest(2))),
        (_digest(3), "ep/one", ("b.io", "ep/one", _digest(3))),
    }
    assert plan.bytes_to_move == 1 + 20 + 30 + 1


def test_same_registry_copies_mount_from_the_source_repository() -> None:
    plan = plan_copy([_input("a.io/ep/one:1", "a.io/ep/copy:1", _manifest(1, 2))])
    assert {t.mount_from for t in plan.transfers} == {"ep/one"}


def test_across_registries_nothing_is_mounted_from_the_source() -> None:
    plan = plan_copy([_input("a.io/ep/one:1", "b.io/ep/one:1", _manifest(1, 2))])
    assert {t.mount_from for t in plan.transfers} == {None}


def test_blobs_already_present_are_skipped_and_counted() -> None:
    plan = plan_copy(
        [_input("a.io/x:1", "b.io/x:1", _manifest(1, 2, 3), present_blobs=frozenset({_digest(2)}))]
    )
    assert {t.digest for t in plan.transfers} == {_digest(1), _digest(3)}
    assert plan.images[0].blobs_present == 1


def test_index_pushes_children_by_digest_then_the_tag_last() -> None:
    amd, arm = _manifest(1, 2), _manifest(3, 2)
    index = _index(amd, arm)
    plan = plan_copy([_input("a.io/x:v1", "b.io/x:v1", index, (amd, arm))])
    pushes = plan.images[0].pushes
    assert [p.reference for p in pushes] == [amd.digest, arm.digest, "v1"]
    assert pushes[-1].raw == index.raw
    assert len({t.digest for t in plan.transfers}) == 3  # the shared layer once


def test_children_already_present_are_not_pushed_and_their_blobs_not_checked() -> None:
    amd, arm = _manifest(1, 2), _manifest(3, 4)
    index = _index(amd, arm)
    plan = plan_copy(
        [_input("a.io/x:v1", "b.io/x:v1", index, (amd, arm), present_manifests=frozenset({amd.digest}))]
    )
    assert [p.reference for p in plan.images[0].pushes] == [arm.digest, "v1"]
    assert {t.digest for t in plan.transfers} == {_digest(3), _digest(4)}


def test_destination_by_digest_is_up_to_date_when_the_manifest_exists() -> None:
    image = _manifest(1)
    request_dst = f"b.io/x@{image.digest}"
    plan = plan_copy([_input("a.io/x:1", request_dst, image, present_manifests=frozenset({image.digest}))])
    assert plan.images[0].status is ImageStatus.UP_TO_DATE


def test_planned_image_by_image_each_blob_starts_once_largest_first() -> None:
    """The engine plans each image as its lookups finish: an image added later gets only
    the transfers no earlier image started, and a blob shared across repositories is
    mounted after the upload that an earlier image started."""
    planner = Planner()
    first = planner.add(_input("a.io/ep/one:1", "b.io/ep/one:1", _manifest(1, 2, 3, 9)))
    assert [t.digest for t in first.transfers] == [_digest(9), _digest(3), _digest(2), _digest(1)]
    assert all(t.mount_from is None for t in first.transfers)

    again = planner.add(_input("a.io/ep/one:2", "b.io/ep/one:2", _manifest(5, 2, 3)))
    assert [t.digest for t in again.transfers] == [_digest(5)]  # 2 and 3 already on their way
    assert set(again.images[0].blobs) == {("b.io", "ep/one", _digest(n)) for n in (5, 2, 3)}

    other = planner.add(_input("a.io/ep/two:1", "b.io/ep/two:1", _manifest(6, 2)))
    mount = next(t for t in other.transfers if t.digest == _digest(2))
    assert mount.mount_from == "ep/one" and mount.after == ("b.io", "ep/one", _digest(2))

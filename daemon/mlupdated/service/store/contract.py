"""What a model put in place of ``current.mlmodel`` by hand must keep: the workspace's
contract with its label folders, its inbox photos and its updates."""

from __future__ import annotations

from ...errors import MlupdatedError, StoreError
from .files import StoreFiles
from .manifest import Manifest

PLACED_BY_HAND = "placed by hand"


def placed_by_hand(version: int) -> str:
    """Why a candidate is not promoted over a model placed by hand."""
    return f"a model placed by hand is current (version {version})"
REFUSED_SUFFIX = ".refused"


def contract_problem(files: StoreFiles, data: bytes, manifest: Manifest) -> str | None:
    """Why ``data`` cannot replace the manifest's current model (None: it can).

    It must load, have the same class labels (the folders of ``corrections/``), the
    same inputs (what the inbox feeds it), and be updatable if the current one is.
    """
    from ...coreml.spec import class_labels, load_spec_bytes

    try:
        new = load_spec_bytes(data)
    except MlupdatedError as exc:
        return exc.reason
    reference = _reference(files, manifest)
    if reference is None:
        return None  # nothing stored to compare with: the model is all there is
    try:
        old = load_spec_bytes(reference)
    except MlupdatedError:
        return None
    labels = sorted(map(str, class_labels(new)))
    wanted = sorted(map(str, class_labels(old)))
    if labels != wanted:
        return f"class labels {', '.join(labels) or 'none'} instead of {', '.join(wanted)}"
    inputs = [(f.name, f.type.SerializeToString()) for f in new.description.input]
    if inputs != [(f.name, f.type.SerializeToString()) for f in old.description.input]:
        names = ", ".join(f.name for f in new.description.input)
        return f"its inputs ({names}) differ from the current model's"
    if old.isUpdatable and not new.isUpdatable:
        return "it is not updatable, so no update could train it"
    return None


def _reference(files: StoreFiles, manifest: Manifest) -> bytes | None:
    """The current version's bytes, else the newest promoted (or any) version's."""
    order = [manifest.current] if isinstance(manifest.current, int) else []
    order += sorted((e.version for e in manifest.versions if e.promoted), reverse=True)
    order += sorted(manifest.numbers(), reverse=True)
    for version in order:
        try:
            return files.read_version(version)
        except StoreError:
            continue
    return None

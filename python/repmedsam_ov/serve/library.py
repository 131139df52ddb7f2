"""What a `serve` process may touch: the cases found in the paths it was given, and one output file per case.

The case list is made once, at start, by `infer`'s rules (`cases.collect_inputs` and `cases.targets`), and
clients name a case by its id in that list: a name from the client is never joined to a path. Entries that a
symlink inside a served folder would take outside that folder are left out; a save never writes through a
symlink or outside the output folder. Imports no model code, never Starlette, never torch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .. import cases
from ..errors import InputError, UsageError

__all__ = ["Entry", "Library", "NotFound"]

log = logging.getLogger("repmedsam_ov")


class NotFound(LookupError):
    """No such case, object or job (the message says which)."""


@dataclass(frozen=True)
class Entry:
    """One case: `id` (its index in the list, as text), `name` (shown to users: the path below the folder it
    was found in), `path`, `kind` (npz, volume, dicom or image) and `target`, the output file a save writes."""

    id: str
    name: str
    path: Path
    kind: str
    target: Path

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "output": self.target.name,
                "saved": self.target.is_file()}


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # outside, unreadable, or a symlink loop
        return False
    return True


def _escapes(path: Path, root: Path) -> bool:
    """Whether `path` (found in the served folder `root`), or for a DICOM folder any file in it, leads outside root."""
    if not _inside(path, root):
        return True
    return path.is_dir() and any(not _inside(p, root) for p in path.iterdir())


class Library:
    """The cases of `paths` (files, DICOM series folders, folders of them, as `infer` takes them) with their
    output files in the folder `output`. Raises InputError when there is no case and UsageError when two cases
    would share an output file or `output` names a file."""

    def __init__(self, paths: list[str], output: str | os.PathLike) -> None:
        self.output = Path(output)
        if self.output.exists() and not self.output.is_dir():
            raise UsageError(f"-o {self.output}: exists and is not a folder; serve saves into an output folder.")
        if self.output.name.lower().endswith(cases.LABEL_EXTS) and not self.output.is_dir():
            raise UsageError(f"-o {self.output} names a file; serve saves into an output folder (one file per case).")
        found: list[tuple[Path, str]] = []
        for given in map(Path, paths):
            if not given.exists():
                raise InputError(f"{given}: no such file or folder.")
            for path in cases.collect_inputs([str(given)]):
                if path != given and _escapes(path, given):
                    log.warning("%s: left out, a symlink that leads outside %s", path, given)
                    continue
                found.append((path, str(path.relative_to(given)) if path != given else path.name))
        if not found:
            raise InputError(f"{', '.join(map(str, paths))}: no cases found {cases.KINDS}.")
        targets = cases.targets([p for p, _ in found], self.output)
        self.entries = [Entry(str(i), name, path, cases.kind(path), target)
                        for i, ((path, name), target) in enumerate(zip(found, targets))]
        self._by_id = {e.id: e for e in self.entries}

    def get(self, case_id: str) -> Entry:
        entry = self._by_id.get(case_id) if isinstance(case_id, str) else None
        if entry is None:
            raise NotFound(f"no case {case_id!r}; the cases are listed at /api/cases.")
        return entry

    def writable_target(self, entry: Entry) -> Path:
        """The entry's output file, checked: inside the output folder, not a symlink, not the input itself."""
        target = entry.target
        if target.is_symlink():
            raise InputError(f"{target}: is a symlink; serve never writes through one (remove it to save).")
        self.output.mkdir(parents=True, exist_ok=True)
        if target.parent.resolve() != self.output.resolve():
            raise InputError(f"{target}: not inside the output folder {self.output}.")
        if target.exists() and target.resolve() == entry.path.resolve():
            raise InputError(f"{entry.path}: the output would replace the input; serve it with another -o.")
        return target

    def readable_target(self, entry: Entry) -> Path:
        """The entry's output file to load labels from; NotFound when there is none yet."""
        target = entry.target
        if target.is_symlink():
            raise InputError(f"{target}: is a symlink; serve never reads labels through one.")
        if not target.exists():
            raise NotFound(f"{entry.name}: no saved labels yet ({target.name} is not in the output folder).")
        return target

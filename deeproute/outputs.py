"""Output folders written all at once: staged next to their target, then renamed into it.

`deeproute route` and `deeproute quantize` each write a fixed set of files into a folder.
Both check the folder before any work starts, write into a staging folder and move the
files into place only when all of them are written, so an error or Ctrl-C leaves the
target as it was. Missing parent folders are created, as `mkdir -p` would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from deeproute.dataset import current_umask
from deeproute.errors import InputError


def check_output_dir(out_dir: str | os.PathLike, names: tuple[str, ...], overwrite: bool, contents: str) -> Path:
    """Raise InputError unless the files `names` can be written into `out_dir`; return its absolute path.

    `contents` names what the folder receives, for messages ("routes", "integer model").
    Files in the folder that `names` does not list are never touched. Listed ones are
    replaced only with `overwrite`.
    """
    target = check_can_create(out_dir, contents)
    for name in names:
        path = target / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise InputError(f"{path}: is not a regular file, so it cannot be replaced; move it away first")
    existing = [name for name in names if (target / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{target}: already contains {', '.join(existing)}; pass --overwrite to replace them")
    return target


def check_can_create(folder: str | os.PathLike, contents: str = "output") -> Path:
    """Raise InputError unless `folder` is a directory or can be created; return its absolute path.

    A missing folder can be created when its nearest existing ancestor is a writable directory.
    """
    if not str(folder):
        raise InputError(f"the output folder path is empty; give a directory for the {contents}")
    target = Path(os.path.abspath(folder))  # normalizes "." and "..", so the parents below are real folders
    if target.is_symlink() and not target.exists():
        raise InputError(f"{target}: is a symbolic link to a missing path; give a directory for the {contents}")
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: exists and is not a directory; give a directory for the {contents}")
    ancestor = target
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{target}: cannot create the folder because {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{target}: directory {ancestor} is not writable")
    return target


@contextlib.contextmanager
def staged_directory(
    out_dir: str | os.PathLike, names: tuple[str, ...], overwrite: bool = False, contents: str = "output"
) -> Iterator[Path]:
    """Yield an empty staging directory; on success its files are renamed into `out_dir`.

    The staging directory lies in the nearest existing folder on the resolved path to
    `out_dir`, so the final renames stay on one file system. On any exception,
    KeyboardInterrupt included, it is deleted and `out_dir` is left as it was.
    """
    target = check_output_dir(out_dir, names, overwrite, contents)
    # Stage beside the folder the path resolves to, which a symbolic link may put on
    # another file system.
    near = Path(os.path.realpath(target)).parent
    while not near.exists():
        near = near.parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=near))
    except OSError as error:
        raise InputError(f"{target}: cannot write next to it ({error.strerror})") from error
    try:
        yield staging
        produced = sorted(staging.iterdir())
        unexpected = [path.name for path in produced if path.name not in names]
        if unexpected:
            raise RuntimeError(f"unexpected files in the staging folder: {unexpected}")
        target.mkdir(mode=0o777, parents=True, exist_ok=True)
        mode = 0o666 & ~current_umask()  # the mode a plain open() would give
        for path in produced:
            os.chmod(path, mode)
            os.replace(path, target / path.name)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

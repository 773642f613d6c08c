"""Opening a file a request names, without ever reading one outside its root.

Checking a path and then opening it is a race: between the two, a folder can be
swapped for a link to somewhere else (a probe served an outside file 32 times in
600 requests that way). So the file is opened first and what was opened is
checked, through its descriptor: the path the kernel gives for the descriptor
must lie inside the root's real path, and the file must be a regular file.
Links that stay inside the root are fine. Everything is then read from that one
open file, never from the path again.

The request's text is taken literally: Flask has already decoded the URL once,
so a name like ``a%41.log`` is a file of that name, and an encoded ``..`` that
survives is only a strange file name inside the root.
"""
import os
import stat
from pathlib import Path
from typing import BinaryIO, Union

_PROC_FD = "/proc/self/fd"


class OutsideRoot(PermissionError):
    """The request names something outside its root, or not a plain file name."""


def check_form(relative: str) -> str:
    """``relative`` with ``/`` separators if it is a plausible relative path;
    OutsideRoot otherwise (absolute, drive letters, backslashes, NUL, ``..``)."""
    if not isinstance(relative, str) or not relative.strip():
        raise OutsideRoot("no file named")
    if "\x00" in relative or "\\" in relative:
        raise OutsideRoot("NUL and backslashes are refused in paths")
    if relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
        raise OutsideRoot("absolute paths are refused")
    if ".." in relative.split("/"):
        raise OutsideRoot("'..' is refused")
    if len(relative.encode("utf-8", "surrogateescape")) > 4096:
        raise OutsideRoot("the path is too long")
    return relative


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def _opened_path(fd: int, joined: str) -> str:
    """The real path of what ``fd`` is, from the kernel where it says it, else
    from the path checked against the descriptor's identity (device, inode)."""
    try:
        return os.readlink(f"{_PROC_FD}/{fd}")
    except OSError:
        pass
    real = os.path.realpath(joined)
    here, there = os.fstat(fd), os.stat(real)
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        raise OutsideRoot("the file changed while it was being opened")
    return real


# O_NONBLOCK: opening a FIFO someone put there must not hang a request thread.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def _keep_if(fd: int, path: str, fits, refusal: str) -> BinaryIO:
    """The open ``fd`` as a blocking file if the real path of what it is passes
    ``fits`` and it is a regular file; otherwise it is closed and refused."""
    try:
        if not fits(_opened_path(fd, path)):
            raise OutsideRoot(refusal)
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise OutsideRoot("not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_inside(root: Union[str, Path], relative: str) -> BinaryIO:
    """``root/relative`` opened for reading, if what was opened is a regular file
    inside ``root`` (after every link). Raises OutsideRoot, FileNotFoundError or
    IsADirectoryError; the caller closes the file."""
    relative = check_form(relative)
    root_real = os.path.realpath(root)
    joined = os.path.join(root_real, relative)
    try:
        fd = os.open(joined, _READ_FLAGS)
    except OSError as exc:
        if exc.errno in (2, 20):  # ENOENT, ENOTDIR
            raise FileNotFoundError(relative) from None
        if exc.errno == 36:  # ENAMETOOLONG
            raise OutsideRoot("the path is too long") from None
        raise
    return _keep_if(fd, joined, lambda opened: _inside(opened, root_real), "the path leads out of its folder")


def open_exactly(real: Union[str, Path]) -> BinaryIO:
    """The file at ``real``, a path resolve_inside gave earlier, opened for
    reading only if what was opened is still that very path: a folder on the
    way swapped for a link since the check gives OutsideRoot, not another file.
    For programs that read the file themselves (ffmpeg reads
    ``/proc/self/fd/N`` of this file, see results/thumbnails.py)."""
    real = os.fspath(real)
    fd = os.open(real, _READ_FLAGS)
    return _keep_if(fd, real, lambda opened: opened == real, "the path changed while it was being opened")


def resolve_inside(root: Union[str, Path], relative: str) -> Path:
    """The real path of ``root/relative`` if it lies inside ``root``: for
    listing and lookups only; to read a file, use open_inside."""
    relative = check_form(relative)
    root_real = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root_real, relative))
    if not _inside(real, root_real):
        raise OutsideRoot("the path leads out of its folder")
    return Path(real)

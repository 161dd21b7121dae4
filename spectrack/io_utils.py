"""File helpers: atomic writes (one file, a set of files, a whole folder) and input hashing.

Every output of spectrack goes through these helpers:

* :func:`atomic_path` / :func:`atomic_write_text`: one file, renamed into
  place when complete.
* :func:`output_folder`: a results folder written as one unit. The new files
  are written into a temporary sibling folder (``.tmp-<name>-...``), which
  then takes the old folder's place in one rename (Linux: an atomic exchange;
  elsewhere the old folder is renamed aside first). A reader, or a run killed
  at any moment, finds the complete old set or the complete new set, never a
  mix. Files in the folder that spectrack did not write are kept (hard links
  into the new folder); ``.spectrack-outputs.json`` records which entries a
  command wrote.
* :func:`check_output_folder`: the checks done before any computation (the
  path is a folder or can become one, it can be written, it holds no file in
  the way), so a bad ``-o`` fails in a second, not after the whole run.
* :func:`atomic_file_set`: several files of one folder staged, then renamed
  in together (the cohort outputs of a batch).

Any :class:`OSError` while writing becomes one
:class:`~spectrack.errors.OutputError`: ``cannot write to OUT: reason``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from .errors import OutputError

__all__ = ["atomic_path", "atomic_write_text", "atomic_file_set", "sha256_file", "output_folder",
           "check_output_folder", "write_errors", "clean_leftovers", "read_manifest", "record_outputs",
           "swap_folder", "MANIFEST", "LABEL_IMAGE_SUFFIXES", "nifti_stem"]

#: File endings of image and label-image files, longest first (``.nii.gz`` before ``.nii``).
LABEL_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd")


def nifti_stem(path) -> str:
    """File name without its image ending (``.nii``, ``.nii.gz``, ``.seg.nrrd``, ``.nrrd``, ``.mha`` ...).

    Examples
    --------
    >>> nifti_stem(Path("a/labels.nii.gz")), nifti_stem(Path("Segmentation.seg.nrrd")), nifti_stem(Path("x.mha"))
    ('labels', 'Segmentation', 'x')
    >>> nifti_stem(Path("x.json"))
    'x'
    """
    name = Path(path).name
    for ext in LABEL_IMAGE_SUFFIXES:
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem

#: Written last into every folder made by :func:`output_folder`: the entries a command wrote.
MANIFEST = ".spectrack-outputs.json"

#: At most this many files that spectrack did not write are carried into a new results folder;
#: a folder holding more is refused (it is not a results folder: give one of its own).
MAX_KEPT_FILES = 10_000


def _read_umask() -> int:
    """The process umask, read without changing it when the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic read-and-restore (done once, at import)
    os.umask(mask)
    return mask


#: Read once at import: changing the umask to read it is not thread-safe.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    An interrupted write (an exception, Ctrl-C) leaves the old file (or none)
    and no temporary file, never half a file; the data is flushed to disk
    before the rename, so a crash cannot leave an empty file either. The
    temporary name (``.tmp-*-<name>``) keeps the final suffixes so writers
    that look at the extension (``.nii.gz``) behave. The file gets the usual
    permissions (``0o644`` less the umask).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with atomic_path(Path(d) / "table.csv") as tmp:
    ...         _ = tmp.write_text("a,b\\n1,2\\n")
    ...     print(sorted(p.name for p in Path(d).iterdir()))
    ['table.csv']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + path.name, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.chmod(tmp, 0o644 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync(path) -> None:
    """Flush a written file to disk (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------- write errors

def _reason(e: OSError) -> str:
    """One line for an OSError: the system's words and the file, when known."""
    text = e.strerror or " ".join(str(e).split()) or type(e).__name__
    if getattr(e, "filename", None):
        text += f" ({Path(e.filename).name})"
    return text


@contextlib.contextmanager
def write_errors(out):
    """Turn any :class:`OSError` raised in the block into :class:`~spectrack.errors.OutputError`.

    Parameters
    ----------
    out : path-like
        The output folder named in the message, as the user gave it.
    """
    try:
        yield
    except OSError as e:
        raise OutputError(out, _reason(e)) from e


# ---------------------------------------------------------------- result folders

def read_manifest(folder) -> dict:
    """The record :func:`output_folder` left in ``folder`` (``{}`` when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _owned(folder: Path) -> set[str]:
    entries = read_manifest(folder).get("entries")
    return {str(e) for e in entries} if isinstance(entries, list) else set()


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _is_leftover(entry: Path, name: str) -> bool:
    return entry.name.startswith((f".tmp-{name}-", f".old-{name}-"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def clean_leftovers(parent, name: str | None = None, *, any_process: bool = False) -> None:
    """Tidy what an interrupted :func:`output_folder` left beside its folders.

    A ``.old-<name>-*`` folder is an earlier result set: removed when
    ``<name>`` exists, else renamed back (the run stopped between its two
    renames). A ``.tmp-<name>-*`` folder is a new set being written: removed
    when the process that wrote it is gone (or always, with ``any_process``,
    when the caller knows no other writer runs, such as a batch at its start).

    Parameters
    ----------
    parent : path-like
        The folder holding the result folders.
    name : str, optional
        Only the leftovers of ``parent/name`` (default: every result folder's).
    any_process : bool
        Remove temporary folders of live processes too.
    """
    parent = Path(parent)
    try:
        entries = sorted(parent.iterdir(), key=lambda p: p.name)
    except OSError:
        return
    host = _host_tag()
    for p in entries:
        if p.name.startswith(".spectrack-probe-"):  # an empty probe folder of a process killed while checking
            with contextlib.suppress(OSError):
                p.rmdir()
            continue
        for kind in ("old", "tmp"):
            prefix = f".{kind}-" + (f"{name}-" if name is not None else "")
            if not p.name.startswith(prefix) or not p.is_dir():
                continue
            parts = p.name[len(f".{kind}-"):].rsplit("-", 3)  # <name>-<host>-<pid>-<random>
            if len(parts) != 4 or (name is not None and parts[0] != name):
                continue
            final = parent / parts[0]
            if kind == "old":
                if final.exists() or final.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.rename(p, final)
            elif any_process or (parts[1] == host and parts[2].isdigit() and not _pid_alive(int(parts[2]))):
                shutil.rmtree(p, ignore_errors=True)


def _is_cwd_or_above(path: Path) -> bool:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    return cwd == path or path in cwd.parents


def _kept_entries(folder: Path, names, force: bool) -> list[Path]:
    """Entries of an existing result folder that the command did not write (kept in the new one)."""
    ours = _owned(folder) | (set(names) if force else set())
    return sorted(p for p in folder.iterdir()
                  if p.name != MANIFEST and p.name not in ours and not p.name.startswith((".tmp-", ".old-")))


def _count_files(entries, limit: int) -> int:
    n = 0
    for e in entries:
        if e.is_dir() and not e.is_symlink():
            for _, dirs, files in os.walk(e):
                n += len(files) + len(dirs)
                if n > limit:
                    return n
        else:
            n += 1
        if n > limit:
            return n
    return n


def check_output_folder(out, names=(), *, force: bool = True, command: str = "spectrack") -> Path:
    """Check, before any computation, that ``out`` can become a results folder.

    Parameters
    ----------
    out : path-like
        The results folder (existing or not).
    names : iterable of str
        Top-level entries the command may write (``regions.csv``, ``figures``).
    force : bool
        True: entries of ``out`` with these names are replaced whoever wrote
        them. False: an entry with one of these names that the command did not
        write itself (no record in ``.spectrack-outputs.json``) is refused.
    command : str
        Named in the message of a refusal (``spectrack phantom``).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    OutputError
        ``out`` (or a folder above it) is a file, cannot be written, is a
        mount point or the current folder, holds files in the way, or holds
        too many other files to keep.
    """
    out = Path(out)
    final = Path(os.path.abspath(out))
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        what = "a link" if final.is_symlink() else "a file"
        raise OutputError(out, f"it is {what}, not a folder: give a folder (new, or one spectrack wrote)")
    above = final.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise OutputError(out, f"{above} is a file, not a folder: give a folder path")
    if final.exists():
        if os.path.ismount(final) or final == final.parent:
            raise OutputError(out, "it is a mount point; results replace their folder as a whole: "
                                   "give a folder inside it")
        if _is_cwd_or_above(final):
            raise OutputError(out, "it is the current folder (or holds it); results replace their folder as a "
                                   "whole: give a folder of its own, for example results/")
    for where in ([above] + ([final] if final.is_dir() else [])):
        try:
            probe = tempfile.mkdtemp(prefix=".spectrack-probe-", dir=where)
            with contextlib.suppress(FileNotFoundError):  # tidied meanwhile by clean_leftovers
                os.rmdir(probe)
        except OSError as e:
            raise OutputError(out, e.strerror or str(e)) from None
    if final.is_dir():
        if not force:
            owned = _owned(final)
            clash = sorted(n for n in names if ((final / n).exists() or (final / n).is_symlink()) and n not in owned)
            if clash:
                shown = ", ".join(clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
                raise OutputError(out, f"it holds {shown}, which {command} did not write: choose a new or empty "
                                       "folder, or add --force to replace them")
        try:
            kept = _kept_entries(final, names, force)
            n = _count_files(kept, MAX_KEPT_FILES)
        except OSError as e:
            raise OutputError(out, _reason(e)) from None
        if n > MAX_KEPT_FILES:
            raise OutputError(out, f"it holds more than {MAX_KEPT_FILES} files that spectrack did not write, "
                                   "which a results folder keeps: give a folder of its own")
    return out


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False when not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # this file system cannot: rename in two steps
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _keep(entry: Path, stage: Path) -> None:
    """Carry an entry spectrack did not write into the new folder: hard links, never copies of data."""
    dst = stage / entry.name
    if entry.is_symlink():
        os.symlink(os.readlink(entry), dst)
    elif entry.is_dir():
        shutil.copytree(entry, dst, symlinks=True, copy_function=os.link)
    else:
        os.link(entry, dst)


def _commit(stage: Path, final: Path, out, names, force: bool, command: str) -> None:
    written = sorted(p.name for p in stage.iterdir() if p.name != MANIFEST)
    from ._version import __version__

    atomic_write_text(stage / MANIFEST, json.dumps(
        {"written_by": command, "spectrack_version": __version__,
         "written": dt.datetime.now().replace(microsecond=0).isoformat(), "entries": written}, indent=1) + "\n")
    if final.is_dir():
        if not force:
            owned = _owned(final)
            clash = sorted(n for n in written if (final / n).exists() and n not in owned)
            if clash:
                raise OutputError(out, f"it holds {', '.join(clash)}, which {command} did not write: choose a "
                                       "new or empty folder, or add --force to replace them")
        try:
            for entry in _kept_entries(final, set(written) | (set(names) if force else set()), True):
                _keep(entry, stage)
        except OSError as e:
            raise OutputError(out, f"it holds files that spectrack did not write, which cannot be kept beside "
                                   f"the new results ({_reason(e)}): move them, or give a new folder") from e
        with contextlib.suppress(OSError):
            os.chmod(stage, final.stat().st_mode & 0o7777)
    else:
        os.chmod(stage, 0o777 & ~_UMASK)
    swap_folder(stage, final)


@contextlib.contextmanager
def output_folder(out, names=(), *, force: bool = True, command: str = "spectrack"):
    """Write a results folder as one unit: yield an empty sibling folder, then put it in ``out``'s place.

    The block writes every file into the yielded folder. When it ends
    normally, ``.spectrack-outputs.json`` (what was written, by which
    command) is added, the entries of the old ``out`` that the command did not
    write are kept (hard-linked into the new folder), and the new folder
    replaces the old one in one rename. When the block raises, or the process
    is killed, ``out`` is untouched (and the temporary folder removed, or
    tidied by the next run).

    Parameters
    ----------
    out : path-like
        The results folder.
    names, force, command
        As for :func:`check_output_folder` (done first).

    Yields
    ------
    Path
        The folder to write into.

    Raises
    ------
    OutputError
        ``out`` cannot be written (checked first), or an :class:`OSError`
        occurred while writing (``cannot write to OUT: reason``).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with output_folder(Path(d) / "res") as tmp:
    ...         _ = (tmp / "regions.csv").write_text("a\\n1\\n")
    ...     print(sorted(p.name for p in (Path(d) / "res").iterdir()))
    ['.spectrack-outputs.json', 'regions.csv']
    """
    names = tuple(names)
    check_output_folder(out, names, force=force, command=command)
    final = Path(os.path.abspath(out))
    with write_errors(out):
        clean_leftovers(final.parent, final.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-{_host_tag()}-{os.getpid()}-", dir=final.parent))
    try:
        with write_errors(out):
            yield stage
            _commit(stage, final, out, names, force, command)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def record_outputs(folder, entries, command: str = "spectrack") -> None:
    """Add ``entries`` (top-level names) to the record of a results folder that spectrack wrote.

    Used by commands that add to an existing results folder (``spectrack
    report``, ``spectrack export``), so that a later run knows these entries
    are its own (replaced, not kept as somebody else's files). A folder with
    no record is left as it is.
    """
    folder = Path(folder)
    data = read_manifest(folder)
    if not data:
        return
    old = data.get("entries") if isinstance(data.get("entries"), list) else []
    data["entries"] = sorted(set(map(str, old)) | {str(e) for e in entries})
    data.setdefault("added_by", [])
    if command not in data["added_by"]:
        data["added_by"].append(command)
    atomic_write_text(folder / MANIFEST, json.dumps(data, indent=1) + "\n")


def swap_folder(new, final) -> None:
    """Put the complete folder ``new`` in the place of ``final`` (existing or not) in one rename.

    Linux exchanges the two atomically; elsewhere the old folder is renamed
    aside first (for the time of one rename, no folder is there). The old
    folder is then removed.
    """
    new, final = Path(new), Path(final)
    for _ in range(5):
        if final.is_dir():
            if _exchange(new, final):
                _fsync_dir(final.parent)
                shutil.rmtree(new, ignore_errors=True)
                return
            old = final.with_name(".old-" + final.name + f"-{_host_tag()}-{os.getpid()}-{os.urandom(3).hex()}")
            os.rename(final, old)
            try:
                os.rename(new, final)
            except OSError:
                with contextlib.suppress(OSError):
                    os.rename(old, final)
                raise
            _fsync_dir(final.parent)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(new, final)
            _fsync_dir(final.parent)
            return
        except OSError as e:  # another writer made the folder meanwhile: replace it
            if not final.is_dir() or e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise OSError(errno.EBUSY, "other processes keep replacing it: run one writer at a time", str(final))


@contextlib.contextmanager
def atomic_file_set(folder):
    """Stage several files of ``folder``, then rename them all in at the end.

    Yields a function ``path(name)`` giving the temporary path to write
    ``name`` (``figures/a.png`` allowed) to. When the block raises, none of
    the files is replaced. The renames at the end take microseconds but are
    not one operation: a process killed during them can leave some files new
    and some old (each one whole).
    """
    folder = Path(folder)
    staged: dict[Path, Path] = {}

    def path(name) -> Path:
        final = folder / name
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + final.name, dir=final.parent)
        os.close(fd)
        staged[final] = Path(tmp)
        return Path(tmp)

    try:
        yield path
        for final, tmp in staged.items():
            _fsync(tmp)
            os.chmod(tmp, 0o644 & ~_UMASK)
        for final, tmp in staged.items():
            os.replace(tmp, final)
    finally:
        for tmp in staged.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)

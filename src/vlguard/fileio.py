"""Reading and writing files safely: strict JSON, atomic writes, and output paths checked up front.

Every JSON file vlguard reads (data files, JSONL run files, ``judge --input``, ``metrics.json``) goes
through ``parse_json``, which refuses what would only fail later, far from the file:

- nesting deeper than ``MAX_JSON_DEPTH`` (``[`` × 200,000 made the standard parser raise
  ``RecursionError``; a few hundred levels would still break code that walks the value);
- lone UTF-16 surrogates (``"\\ud800"``): valid JSON escapes but not Unicode, so the text could be
  read and validated, and then every write of it failed with ``UnicodeEncodeError``.

Every file vlguard writes whole goes through ``atomic_write_bytes`` / ``atomic_write_text``: a temporary
file beside the target, fsynced and renamed into place, so readers see the old or the new file. The
temporary file's name carries the writer's process id, so the temporary files of a writer that was
killed (``kill -9`` gives no chance to clean up) are removed by the next write to the same target.

``check_output_file`` / ``check_output_dir`` turn "the output path is a folder / a file" into one
clear error before any work starts, instead of a traceback at the end of it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError, DataValidationError, Problem, VLGuardError

# Far deeper than any file vlguard reads (a messages-format conversation is 6 levels deep), far below
# the interpreter's recursion limit.
MAX_JSON_DEPTH = 64

# A JSON escape of a UTF-16 surrogate. Pairs (an emoji written "\ud83d\ude00" by an ASCII-only encoder)
# are fine once decoded; only when an escape is not half of a pair (an escaped backslash before "ud800"
# also looks like one) do we walk the decoded value to find the lone surrogate, so files full of pairs
# stay fast.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonError(ValueError):
    """Text that vlguard does not accept as JSON.

    ``line`` / ``column`` locate a syntax error in the text; ``path`` locates a bad value inside the
    parsed document (list indexes and object keys from the top, e.g. ``(3, "instr-resp", 0)``).
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        path: Sequence[int | str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = tuple(path)

    def where(self) -> str:
        """``line L column C`` for a syntax error, ``at <path>`` for a bad value, or ``""``."""
        if self.line is not None:
            return f"line {self.line} column {self.column}"
        if self.path:
            return f"at {format_json_path(self.path)}"
        return ""

    def detail(self) -> str:
        """The message followed by where it happened, when known: ``Expecting value (line 1 column 5)``."""
        where = self.where()
        return f"{self.message} ({where})" if where else self.message


def format_json_path(path: Sequence[int | str]) -> str:
    """``(3, "instr-resp", 0, "instruction")`` → ``[3].instr-resp[0].instruction``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _syntax_message(err: json.JSONDecodeError) -> str:
    # The standard messages end in "starting at" / "delimiter" followed by their own location, which we
    # print ourselves ("Unterminated string starting at" would read "...starting at at line 1").
    return err.msg.removesuffix(" starting at").removesuffix(":")


def parse_json(text: str) -> Any:
    """Parse JSON text; ``JsonError`` for invalid syntax, nesting deeper than ``MAX_JSON_DEPTH`` or a lone surrogate."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise JsonError(_syntax_message(err), line=err.lineno, column=err.colno) from None
    except RecursionError:
        raise JsonError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    _check_depth(value)
    if _may_hold_lone_surrogate(text):
        _check_surrogates(value)
    return value


def _may_hold_lone_surrogate(text: str) -> bool:
    """Whether a surrogate escape in ``text`` is not half of a high + low pair (cheap: escapes only)."""
    low_expected_at = -1  # where the low half of the last high surrogate must start
    for match in _SURROGATE_ESCAPE.finditer(text):
        is_high = match.group()[3] in "89abAB"
        if low_expected_at != -1 and (is_high or match.start() != low_expected_at):
            return True
        if not is_high and low_expected_at == -1:
            return True
        low_expected_at = match.end() if is_high else -1
    return low_expected_at != -1


def _check_depth(value: Any) -> None:
    """``JsonError`` naming the top-level entry that holds a container nested deeper than ``MAX_JSON_DEPTH``."""
    # Iterative, so that checking a deep value cannot itself exhaust the stack; only the top-level
    # key or index is carried along (cheap on files of millions of records, and enough to find it).
    stack: list[tuple[Any, int, tuple[int | str, ...]]] = []
    top = value.items() if type(value) is dict else enumerate(value) if type(value) is list else ()
    for key, child in top:
        if type(child) is dict or type(child) is list:
            stack.append((child, 2, (key,)))
    while stack:
        item, depth, where = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JsonError(f"nested more than {MAX_JSON_DEPTH} levels deep", path=where)
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1, where))


def _check_surrogates(value: Any) -> None:
    """``JsonError`` naming the path to the first string (or key) holding a lone UTF-16 surrogate."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            match = _SURROGATE.search(item)
            if match is not None:
                raise JsonError(
                    f"a lone UTF-16 surrogate ('\\u{ord(match.group()):04x}' at character {match.start()}) "
                    "is not Unicode text; the file was written by a broken encoder",
                    path=path,
                )
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if _SURROGATE.search(key):
                    raise JsonError("an object key holds a lone UTF-16 surrogate", path=path)
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, index)) for index, child in reversed(list(enumerate(item))))


def decode_utf8(data: bytes, file: str | Path) -> str:
    """UTF-8 text of a file's bytes (a byte-order mark is dropped); ``DataValidationError`` naming the line otherwise."""
    try:
        # utf-8-sig: a byte-order mark (common from Windows editors) is not a reason to refuse a file.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.start + 1].hex()
        raise DataValidationError(
            [
                Problem(
                    str(file),
                    f"line {line}",
                    "",
                    f"not UTF-8 text: byte 0x{bad} at offset {err.start} (save the file as UTF-8)",
                )
            ]
        ) from None


def read_text(path: str | Path) -> str:
    """A UTF-8 text file; ``DataValidationError`` naming the file when it cannot be read or decoded."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        reason = "it is a folder" if path.is_dir() else (err.strerror or str(err))
        raise DataValidationError([Problem(str(path), "", "", f"cannot read the file: {reason}")]) from None
    return decode_utf8(data, path)


def json_problem(err: JsonError, file: str | Path, record: str = "") -> Problem:
    """A ``Problem`` for a ``JsonError``: the record is ``record`` or, for a list, ``#<index>`` of the path."""
    path = err.path
    if not record and path and isinstance(path[0], int):
        record, path = f"#{path[0]}", path[1:]
    field = format_json_path(path)
    where = f" at line {err.line} column {err.column}" if err.line is not None else ""
    return Problem(str(file), record, field, f"not valid JSON: {err.message}{where}")


# ---------------------------------------------------------------------------------------------------
# Writing


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """``path`` as a file to (over)write: ``ConfigError`` when it is empty or unset, or when it, or a folder it
    needs, is the wrong kind."""
    _check_given(path, what)
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: the {what} is an existing folder; give a file path")
    _check_parents(path, what)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """``path`` as a folder to create or add to: ``ConfigError`` when it is empty or unset, or when it, or
    a parent, is a file.

    An empty path would mean the current folder (its files mixed with the run's), and ``null`` / ``None``
    is an unset value read as text (a folder named ``null``), never a folder the user meant.
    """
    _check_given(path, what)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: the {what} is an existing file, not a folder; give a folder path")
    _check_parents(path, what)
    return path


# What an unset value reads as when it is taken as text (YAML's null, Python's None).
_UNSET_WORDS = frozenset({"null", "none", "~"})


def _check_given(path: str | os.PathLike[str], what: str) -> None:
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError(f"the {what} path is empty (it would mean the current folder); give a path")
    if text.strip().lower() in _UNSET_WORDS:
        raise ConfigError(f"the {what} path is {text!r}, an unset value, not a folder name; give a path")


def _check_parents(path: Path, what: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{path}: cannot create the {what}: {parent} is a file, not a folder")
            return


def _host_tag() -> str:
    # Process ids only mean something on one machine (a run folder may sit on a shared filesystem).
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{_host_tag()}-"


def _writer_is_gone(temp: Path, target: Path) -> bool:
    """Whether ``temp`` is a temporary file of ``target`` whose writer (on this machine) has exited."""
    rest = temp.name[len(_temp_prefix(target)) :]
    pid_text = rest.split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, but another user's process
    return False


def remove_stale_temp_files(target: str | Path) -> int:
    """Delete the temporary files left beside ``target`` by writers that were killed; returns how many."""
    target = Path(target)
    removed = 0
    with contextlib.suppress(OSError):
        for temp in target.parent.glob(_glob_escape(_temp_prefix(target)) + "*.tmp"):
            if _writer_is_gone(temp, target):
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
                    removed += 1
    return removed


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half of one.

    ``ConfigError`` when ``path`` is a folder (or its parent is a file). Stale temporary files of
    killed writers of the same target are removed afterwards.
    """
    path = check_output_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_temp_prefix(path)}{os.getpid()}-", suffix=".tmp", dir=path.parent
        )
    except OSError as err:
        raise VLGuardError(f"{path}: cannot write the file: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise VLGuardError(f"{path}: cannot write the file: {err.strerror}") from None
        raise
    remove_stale_temp_files(path)
    return path


def encode_utf8(text: str, path: str | Path) -> bytes:
    """``text`` as UTF-8; ``VLGuardError`` naming the file (and where) when it holds a lone surrogate."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        line = text.count("\n", 0, err.start) + 1
        raise VLGuardError(
            f"{path}: not written: line {line} would hold a lone UTF-16 surrogate "
            f"('\\u{ord(text[err.start]):04x}'), which is not Unicode text"
        ) from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``atomic_write_bytes`` of UTF-8 text (refused before any file is touched if it is not Unicode)."""
    return atomic_write_bytes(path, encode_utf8(text, path))

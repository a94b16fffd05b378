"""A data file as a whole: checked (present, text, a known header or field count, some rows) and
scanned once for its sha256 and block boundaries, before anything is written.

A leading UTF-8 BOM is skipped. A gzip file (`.csv.gz`, told by its content) is decompressed
once, as a stream, into a copy in the partition's stage, and its blocks are read from there.
Block boundaries fall just after a line end, so every block holds whole lines.
"""

import errno
import gzip
import hashlib
import os
import stat
import tempfile
import weakref
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from schemas.datasets import ZYELL, DatasetSpec, PartitionError, plain_name
from tasks.errors import quote

DEFAULT_BLOCKSIZE = 32 * 2**20
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
SAMPLE_LINES = 1000
HEAD_BYTES = 2**20  # the header and the SAMPLE_LINES first rows, in either format


class IngestError(ValueError):
    """A problem with a whole file: nothing of it is written."""


@dataclass(frozen=True)
class FileHead:
    """What the start of a file tells: labelled or not, its header and its first rows."""

    labelled: bool
    header: bytes  # empty for a format without a header
    data_start: int  # offset of the first row in the text: after a UTF-8 BOM and the header
    sample: tuple[str, ...]  # the first rows, for specs that read the partition from them


@dataclass(frozen=True)
class FileScan:
    """One pass over a file: its identity, header and where its blocks start."""

    path: str  # the file as given, named in reports and the quarantine
    text_path: str  # where its text is read: the file itself, or the decompressed copy of a gzip file
    sha256: str  # of the text, so a day and its gzip-compressed copy are the same version
    size: int  # of the text
    labelled: bool
    header: bytes  # empty for a format without a header
    block_starts: tuple[int, ...]  # byte offsets in the text; the first is just after the header
    first_lines: tuple[int, ...]  # 1-based line number of each block's first line
    data_lines: int
    sample: tuple[str, ...]  # the first rows

    def release(self) -> None:
        """Remove the decompressed copy, if any; also done on leaving a `with` block, or when
        the scan is garbage collected."""
        if self.text_path != self.path:
            Path(self.text_path).unlink(missing_ok=True)

    def __enter__(self) -> "FileScan":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def check_header(path: Path, header: bytes, spec: DatasetSpec) -> bool:
    """Whether the header names the labelled columns (True) or the unlabelled ones (False)."""
    try:
        names = header.decode("utf-8").rstrip("\r\n").split(",")
    except UnicodeDecodeError as error:
        raise IngestError(f"{path}: line 1: the header is not UTF-8 text") from error
    if names in (list(spec.columns), list(spec.unlabelled_columns)):
        return names == list(spec.columns)
    missing = [c for c in spec.unlabelled_columns if c not in names]
    extra = [c for c in names if c not in spec.columns]
    if missing:
        raise IngestError(f"{path}: line 1: missing column(s) {missing}")
    if extra:
        raise IngestError(f"{path}: line 1: unexpected column(s) {quote(extra)}")
    raise IngestError(f"{path}: line 1: columns out of order; expected {list(spec.columns)}")


def check_field_count(path: Path, first_lines: list[bytes], spec: DatasetSpec) -> bool:
    """For a format without a header: labelled (True) or not (False), from the most common field
    count of the first lines, so that a few bad lines at the top do not decide it."""
    wanted = (len(spec.columns), len(spec.unlabelled_columns))
    lines = [line for line in first_lines if line.strip()]
    counts = Counter(line.count(b",") + 1 for line in lines)
    found = {fields: n for fields, n in counts.items() if fields in wanted}
    if found:
        return max(found, key=found.__getitem__) == len(spec.columns)
    first = f"; line 1 has {first_lines[0].count(b',') + 1}" if first_lines[0].strip() else ""
    raise IngestError(
        f"{path}: none of the first {len(lines)} lines has {wanted[0]} fields (labelled "
        f"{spec.name}) or {wanted[1]} (unlabelled){first}"
    )


def check_path(path: Path) -> None:
    """A regular file, or an error that says what the entry is instead."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise IngestError(f"{path}: {missing_entry(path, error)}") from error
    if stat.S_ISDIR(mode):
        raise IngestError(f"{path}: is a directory, not a data file")
    if not stat.S_ISREG(mode):
        raise IngestError(f"{path}: not a regular file")


def missing_entry(path: Path, error: OSError) -> str:
    """Why `path` cannot be opened: a symlink loop, a dangling link, no such file, or the OS's reason."""
    if error.errno == errno.ELOOP:
        return "a symlink loop"
    if error.errno == errno.ENOENT and path.is_symlink():
        return f"a dangling link to {os.readlink(path)}"
    if error.errno == errno.ENOENT:
        return "no such file"
    return error.strerror or str(error)


def is_gzip(path: Path) -> bool:
    """Told by the content, not the name: a `.csv` that is really gzip is read all the same."""
    with open(path, "rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def open_text(path: Path) -> BinaryIO:
    """The file's bytes, decompressed on the fly if it is gzip (several members are read as one)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


@contextmanager
def gzip_errors_named(path: Path) -> Iterator[None]:
    """A damaged or truncated gzip file is a file-level error, like any unreadable file."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise IngestError(f"{path}: not a readable gzip file ({error})") from error


def read_head(path: Path, spec: DatasetSpec = ZYELL) -> FileHead:
    """Check the start of the file: present, text, a known header or field count."""
    check_path(path)
    with gzip_errors_named(path), open_text(path) as stream:
        chunk = stream.read(HEAD_BYTES)
    if chunk.startswith(GZIP_MAGIC) or b"\x00" in chunk[:4096]:
        raise IngestError(f"{path}: the file is binary, not CSV text")
    bom = len(UTF8_BOM) if chunk.startswith(UTF8_BOM) else 0
    if not chunk[bom:]:
        raise IngestError(f"{path}: the file is empty")
    header, labelled = _header_of(path, chunk[bom:], spec)
    start = bom + len(header)
    rows = chunk[start:].split(b"\n", SAMPLE_LINES)[:SAMPLE_LINES]
    return FileHead(labelled, header, start, tuple(r.decode("utf-8", errors="replace") for r in rows if r))


def unreadable_files(paths: list[Path], spec: DatasetSpec = ZYELL) -> dict[Path, str]:
    """The files that fail the check of their start (missing, not text, an unknown header), each
    with its error. Cheap, and light to import: a bad file is told before the cluster, Prefect or
    Dask are even loaded."""
    errors = {}
    for path in paths:
        try:
            read_head(path, spec)
        except IngestError as error:
            errors[path] = str(error)
    return errors


def _header_of(path: Path, text: bytes, spec: DatasetSpec) -> tuple[bytes, bool]:
    """The header line (empty for a format without one) and whether the file is labelled."""
    if not spec.has_header:
        return b"", check_field_count(path, text.split(b"\n", SAMPLE_LINES)[:SAMPLE_LINES], spec)
    end = text.find(b"\n")
    first_line = text if end < 0 else text[: end + 1]
    labelled = check_header(path, first_line, spec)
    if end < 0:
        raise IngestError(f"{path}: the file has a header but no rows")
    return first_line, labelled


def text_copy(path: Path, workdir: Path | None) -> Path:
    """A new, empty file in `workdir` (default: the temporary folder) for a gzip file's text."""
    handle, name = tempfile.mkstemp(prefix=".gunzip-", suffix=f"-{plain_name(path)}", dir=workdir)
    os.close(handle)
    return Path(name)


def scan_file(
    path: Path, spec: DatasetSpec = ZYELL, blocksize: int = DEFAULT_BLOCKSIZE, workdir: Path | None = None
) -> FileScan:
    """Check the file as a whole and find block boundaries at line ends, in one pass.

    A gzip stream cannot be read from an offset, so its blocks could not be read on their
    own. A gzip file is therefore decompressed once, as a stream of `blocksize` chunks (memory
    stays bounded), into a copy in `workdir` while it is scanned, and its blocks are read from
    that copy, by any Dask worker that sees `workdir`. Ingest puts the copy in the partition's
    stage, so a crash leaves it where recovery cleans up; the scan removes it on `release()`,
    at the end of a `with` block, or when it is garbage collected.
    """
    head = read_head(path, spec)
    text_path = text_copy(path, workdir) if is_gzip(path) else path
    try:
        scan = _scan(path, text_path, head, spec, blocksize)
    except BaseException:
        if text_path != path:
            text_path.unlink(missing_ok=True)
        raise
    if text_path != path:
        weakref.finalize(scan, text_path.unlink, missing_ok=True)
    return scan


def _scan(path: Path, text_path: Path, head: FileHead, spec: DatasetSpec, blocksize: int) -> FileScan:
    """The pass itself; a gzip file's text is written to `text_path` on the way."""
    digest, newlines, offset, last_byte = hashlib.sha256(), 0, 0, b""
    starts, lines = [head.data_start], [spec.first_data_line]
    with gzip_errors_named(path), ExitStack() as files:
        stream = files.enter_context(open_text(path))
        sink = files.enter_context(open(text_path, "wb")) if text_path != path else None
        while chunk := stream.read(blocksize):
            first_newline = chunk.find(b"\n")
            if offset and first_newline >= 0 and offset + first_newline + 1 > starts[-1]:
                starts.append(offset + first_newline + 1)
                lines.append(newlines + 2)
            if sink:
                sink.write(chunk)
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            offset += len(chunk)
            last_byte = chunk[-1:]
    data_lines = newlines - (spec.first_data_line - 1) + (last_byte != b"\n")
    if data_lines <= 0:
        raise IngestError(f"{path}: the file has a header but no rows")
    keep = [i for i, start in enumerate(starts) if start < offset]
    return FileScan(
        path=str(path),
        text_path=str(text_path),
        sha256=digest.hexdigest(),
        size=offset,
        labelled=head.labelled,
        header=head.header,
        block_starts=tuple(starts[i] for i in keep),
        first_lines=tuple(lines[i] for i in keep),
        data_lines=data_lines,
        sample=head.sample,
    )


def resolve_partition(path: Path, scan: FileScan | FileHead, spec: DatasetSpec, explicit: str | None) -> str:
    """The partition a file fills: given by hand, or as the spec reads it from the file's name
    (without `.gz`) and first rows."""
    try:
        if explicit is not None:
            return spec.normalise_partition(explicit)
        return spec.partition_of(path, scan.sample)
    except PartitionError as error:
        raise IngestError(f"{path}: {error}") from error

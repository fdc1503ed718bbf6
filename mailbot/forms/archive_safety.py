"""Zip bomb and hostile-XML checks applied before any zip container (xlsx, ods, docx) is loaded.

Two passes guard every container:

* :func:`open_checked_zip` looks at the central directory only: member count, declared
  uncompressed sizes, their total and the compression ratio against :class:`~mailbot.limits.Limits`.
* :func:`read_member` / :func:`scan_members` inflate members in bounded chunks, counting the bytes
  actually produced, so a member whose header lies about its size is caught while reading; XML
  members are refused when they carry a DTD (``<!DOCTYPE``/``<!ENTITY``: billion laughs, external
  entities), which no genuine office file contains.

Why part of ``zipfile``'s member reading is written here: a small stored or deflated member
(≤ 1 MB declared) is inflated by one ``zlib`` call capped at its declared size, straight from the
attachment's bytes, after the checks ``zipfile.open`` makes (local header signature, its name
against the directory's, the container's end) and with its CRC-32 check (:func:`_inflate_whole`).
Measured: ~230 → ~70 µs for a form's nine members, the largest single cost of the form read
after the bare reader (docs/PERFORMANCE.md, "Form read").  Anything else (empty, encrypted,
another method, bigger) is read through ``zipfile`` in bounded chunks, as before; both paths
gave the same verdict on 12,000 randomly damaged forms, and ``benchmarks/form_equivalence.py``
compares the readings and refusals of ~4,000 files with a recorded run after any change here.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailbot.charsets import decode_guess
from mailbot.errors import UnreadableForm
from mailbot.forms.magic import zip_kind
from mailbot.limits import Limits

_CHUNK = 1 << 16
_WHOLE = 1 << 20  # members declaring at most this many bytes are inflated in one bounded call
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile)
"""What ``zipfile`` raises on a damaged container, for readers that open one themselves."""
_DTD_MARKERS: tuple[bytes, ...] = tuple(
    marker.encode(enc)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for enc in ("ascii", "utf-16-le", "utf-16-be")
)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader: 30 bytes
_ENCRYPTED_OR_PATCHED = 0x1 | 0x20 | 0x40  # flag bits zipfile.open refuses or decrypts
_MSG_DAMAGED = "附件文件已损坏或不完整，无法打开，请检查后重新发送（建议用 Excel 或 WPS 重新保存为 .xlsx）"
_MSG_TOO_BIG = "附件内容过大或结构异常，无法处理，请删除多余内容后用 Excel 或 WPS 重新保存再发送"


@dataclass
class _Budget:
    """Uncompressed bytes still allowed for the whole container."""

    left: int


def _bomb(detail: str) -> UnreadableForm:
    return UnreadableForm("zip_bomb", _MSG_TOO_BIG, detail)


def _directory_entries(data: bytes) -> int:
    """An upper bound on the central-directory entries ``zipfile`` would parse: each starts with
    ``PK\\1\\2`` and sits before the end-of-central-directory record."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    return data.count(b"PK\x01\x02", 0, end if end >= 0 else len(data))


def open_zip(data: bytes, limits: Limits) -> zipfile.ZipFile:
    """Open ``data`` as a zip, refusing more than ``limits.max_zip_members`` entries before
    ``zipfile`` builds one object per entry (25 MB of empty entries would cost 300 MB).

    Raises ``UnreadableForm`` with code ``corrupt`` or ``too_many_members``.
    """
    entries = _directory_entries(data)
    if entries > limits.max_zip_members:
        raise _too_many_members(entries, limits)
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            NotImplementedError, UnicodeDecodeError) as exc:
        raise UnreadableForm("corrupt", _MSG_DAMAGED, f"not a readable zip container: {exc}") from exc


def _too_many_members(count: int, limits: Limits) -> UnreadableForm:
    return UnreadableForm(
        "too_many_members", _MSG_TOO_BIG, f"zip has {count} members, limit {limits.max_zip_members}"
    )


def open_checked_zip(data: bytes, limits: Limits) -> zipfile.ZipFile:
    """Open ``data`` as a zip after checking its directory against ``limits``.

    Raises ``UnreadableForm`` with code ``corrupt`` (not a readable zip), ``too_many_members`` or
    ``zip_bomb`` (declared sizes or ratio beyond the limits).
    """
    zf = open_zip(data, limits)
    infos = zf.infolist()
    if len(infos) > limits.max_zip_members:
        raise _too_many_members(len(infos), limits)
    declared = sum(i.file_size for i in infos)
    compressed = sum(i.compress_size for i in infos)
    if declared > limits.max_uncompressed_bytes:
        raise _bomb(f"declared uncompressed size {declared} > {limits.max_uncompressed_bytes}")
    for info in infos:
        if info.file_size > (1 << 20) and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
            raise _bomb(
                f"member {info.filename!r} ratio {info.file_size / max(info.compress_size, 1):.0f}"
                f" > {limits.max_compression_ratio:.0f}"
            )
    if declared > (1 << 20) and declared > limits.max_compression_ratio * max(compressed, 1):
        raise _bomb(f"container ratio {declared / max(compressed, 1):.0f} > {limits.max_compression_ratio:.0f}")
    return zf


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Iterator[bytes]:
    """Yield the member's bytes, enforcing the real size against its header: in one piece
    when :func:`_inflate_whole` can, else chunk by chunk through ``zipfile``."""
    whole = _inflate_whole(zf, info, budget)
    if whole is not None:
        if whole:
            yield whole
        return
    yield from _inflate_chunks(zf, info, budget)


def _inflate_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Iterator[bytes]:
    """The member's bytes in bounded chunks through ``zipfile``, counted against its header."""
    produced = 0
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                produced += len(chunk)
                budget.left -= len(chunk)
                if produced > info.file_size:
                    raise _bomb(f"member {info.filename!r} inflates beyond its declared size")
                if budget.left < 0:
                    raise _bomb("actual uncompressed size exceeds the limit")
                yield chunk
    except UnreadableForm:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
            zlib.error) as exc:  # RuntimeError: a member that needs a password
        raise UnreadableForm("corrupt", _MSG_DAMAGED, f"member {info.filename!r}: {exc!r}") from exc
    if produced != info.file_size:
        raise UnreadableForm("corrupt", _MSG_DAMAGED, f"member {info.filename!r} is truncated")


# Members already inflated and found whole, by (method, declared size, CRC-32, compressed
# bytes): the output is a function of these, so a member equal in all four to one seen before
# (the theme and styles of one template, in every form made from it) gives the same bytes and
# the same verdict without inflating it again.  Bounded: _INFLATED_SIZE members, each at most
# _INFLATED_RAW compressed and _INFLATED_OUT inflated bytes.
_INFLATED: dict[tuple[int, int, int, bytes], bytes] = {}
_INFLATED_SIZE = 32
_INFLATED_RAW = 1 << 16
_INFLATED_OUT = 1 << 16


def _inflate_whole(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes | None:
    """The bytes of a small stored or deflated member inflated by one ``zlib`` call whose
    output is capped at the declared size, as ``zipfile`` reads it (a member that would inflate
    further fails its CRC-32, like a damaged one), with the checks ``zipfile.open`` and its
    reader make (local header, its name, CRC-32) and their errors; ``None`` for any other member
    (empty, encrypted, another method, over :data:`_WHOLE` bytes, a stored size mismatch, a
    container not held in memory): those take the chunked path."""
    size = info.file_size
    fp = zf.fp
    if (not size or size > _WHOLE or info.flag_bits & _ENCRYPTED_OR_PATCHED or not isinstance(fp, io.BytesIO)
            or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            or (info.compress_type == zipfile.ZIP_STORED and info.compress_size != size)):
        return None
    data = fp.getvalue()  # the caller's bytes, not a copy
    offset = info.header_offset
    try:
        header = _LOCAL_HEADER.unpack_from(data, offset)
        if header[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile("Bad magic number for file header")
        start = offset + _LOCAL_HEADER.size
        raw_name = data[start:start + header[10]]
        encoding = "utf-8" if header[3] & 0x800 else zf.metadata_encoding or "cp437"
        # ASCII reads the same in UTF-8 and cp437 (whose codec is Python code): decoded in C
        ascii_name = raw_name.isascii() and encoding in ("utf-8", "cp437")
        name = raw_name.decode("ascii" if ascii_name else encoding)
        if name != info.orig_filename:
            raise zipfile.BadZipFile(f"File name in directory {info.orig_filename!r} and header {raw_name!r} differ.")
        start += header[10] + header[11]
        raw = data[start:start + info.compress_size]
        short = len(raw) < info.compress_size  # the container ends inside the member
        key = (info.compress_type, size, info.CRC, raw)
        known = _INFLATED.get(key) if not short else None
        if known is not None:
            out = known
        elif info.compress_type == zipfile.ZIP_STORED:
            if short:
                raise EOFError
            out = raw
        else:
            inflater = zlib.decompressobj(-15)
            out = inflater.decompress(raw, size)  # size > 0: zlib's 0 would mean "no cap"
            if short and not inflater.eof and len(out) < size:
                raise EOFError  # zipfile would have to read past the end
        if known is None:
            if zlib.crc32(out) != info.CRC:
                raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
            if len(out) == size and len(raw) <= _INFLATED_RAW and size <= _INFLATED_OUT:
                if len(_INFLATED) >= _INFLATED_SIZE:
                    _INFLATED.clear()
                _INFLATED[key] = out
    except (zipfile.BadZipFile, struct.error, EOFError, ValueError, zlib.error) as exc:
        raise UnreadableForm("corrupt", _MSG_DAMAGED, f"member {info.filename!r}: {exc!r}") from exc
    budget.left -= len(out)
    if budget.left < 0:
        raise _bomb("actual uncompressed size exceeds the limit")
    if len(out) != size:
        raise UnreadableForm("corrupt", _MSG_DAMAGED, f"member {info.filename!r} is truncated")
    return out


def _is_xml_name(name: str) -> bool:
    return name.lower().endswith((".xml", ".rels", ".vml")) or name == "[Content_Types].xml"


def _check_dtd(name: str, tail: bytes, chunk: bytes) -> bytes:
    window = tail + chunk if tail else chunk
    # Every marker holds the byte "!" (0x21) in each encoding: one memchr clears most members.
    if b"!" in window and any(m in window for m in _DTD_MARKERS):
        raise UnreadableForm(
            "unsafe_xml", _MSG_TOO_BIG,
            f"XML member {name!r} declares a DTD or entities (entity-expansion attack?)",
        )
    return window[-32:]


def scan_members(
    zf: zipfile.ZipFile,
    limits: Limits,
    *,
    keep: Callable[[str], bool] = lambda name: False,
) -> dict[str, bytes]:
    """Inflate every member in bounded chunks; return the bytes of members for which ``keep``
    is true (normalised names, ``\\`` -> ``/``).

    Enforces actual sizes (``zip_bomb``), refuses DTDs in XML members (``unsafe_xml``) and
    reports damaged members (``corrupt``).
    """
    budget = _Budget(limits.max_uncompressed_bytes)
    kept: dict[str, bytes] = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = info.filename.replace("\\", "/")
        xml = _is_xml_name(name)
        want = keep(name)
        whole = _inflate_whole(zf, info, budget)
        if whole is not None:  # the common case, without the chunks' generator
            if xml:
                _check_dtd(name, b"", whole)
            if want:
                kept[name] = whole
            continue
        parts: list[bytes] = []
        tail = b""
        for chunk in _inflate_chunks(zf, info, budget):
            if xml:
                tail = _check_dtd(name, tail, chunk)
            if want:
                parts.append(chunk)
        if want:
            kept[name] = b"".join(parts)
    return kept


def read_member(zf: zipfile.ZipFile, member: str | zipfile.ZipInfo, limits: Limits) -> bytes:
    """Read one member (a ``ZipInfo``, or a normalised name: the first member so named) with
    the same size and DTD checks."""
    if isinstance(member, zipfile.ZipInfo):
        info = member
    else:
        found = next((i for i in zf.infolist() if i.filename.replace("\\", "/") == member), None)
        if found is None:
            raise KeyError(member)
        info = found
    name = info.filename.replace("\\", "/")
    tail = b""
    parts = []
    for chunk in _inflate(zf, info, _Budget(limits.max_uncompressed_bytes)):
        if _is_xml_name(name):
            tail = _check_dtd(name, tail, chunk)
        parts.append(chunk)
    return b"".join(parts)


def member_names(zf: zipfile.ZipFile) -> set[str]:
    """Member names with Windows separators normalised to ``/``."""
    return {i.filename.replace("\\", "/") for i in zf.infolist()}


def zip_contents_kind(zf: zipfile.ZipFile, limits: Limits) -> str:
    """:func:`~mailbot.forms.magic.zip_kind` of an open zip: its member names and the start of a
    ``mimetype`` member small enough to be one (a genuine one is under 100 bytes)."""
    names = member_names(zf)
    mimetype = b""
    if "mimetype" in names:
        info = next(i for i in zf.infolist() if i.filename.replace("\\", "/") == "mimetype")
        if info.file_size < 200:
            mimetype = read_member(zf, info, limits)[:100].strip()
    return zip_kind(names, mimetype)


def member_display_name(info: zipfile.ZipInfo) -> str:
    """A member's name as its author wrote it: names not flagged UTF-8 are bytes in the
    writer's code page (zipfile decodes them as cp437), UTF-8 or GB18030 on Chinese systems."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    return decode_guess(raw) or info.filename

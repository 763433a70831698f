"""Magic bytes: the tests the built-in formats (:mod:`.formats`) sniff a file's first bytes with.

PNG and JPEG have fixed signatures; DICOM Part 10 files carry ``DICM`` at offset 128; old
ACR-NEMA files and DICOM data sets written without the preamble start directly with a data
element, which :func:`looks_like_bare_dicom` recognises (DICOM PS3.10 §7.1, PS3.5 §7.1).
"""

from __future__ import annotations

import struct
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
HEAD_SIZE = 132

# Groups a data set may start with when it has no preamble: file meta, identifying, patient,
# acquisition, relationship, image presentation (ACR-NEMA 2.0 files usually start at 0008).
_FIRST_GROUPS = frozenset({0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028})
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)

# Other formats, only to say what a rejected file looks like.
_OTHER_SIGNATURES = (
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"RIFF", "a RIFF (WebP/AVI/WAV) file"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a raw JPEG 2000 codestream"),
)


def read_head(path: Path, size: int = HEAD_SIZE) -> bytes:
    """The first ``size`` bytes of ``path`` (fewer if the file is shorter)."""
    with open(path, "rb") as fh:
        return fh.read(size)


def looks_like_bare_dicom(head: bytes) -> bool:
    """True when ``head`` plausibly starts with a DICOM data element (no preamble).

    Checks the first tag's group and that it is followed by either an explicit VR or an
    implicit 32-bit length. A cheap filter only: the reader still has to parse the file.
    """
    if len(head) < 8:
        return False
    group, element = struct.unpack_from("<HH", head)
    if group not in _FIRST_GROUPS or element > 0x7FFF:
        return False
    if head[4:6] in _VRS:
        return True
    length = int(struct.unpack_from("<I", head, 4)[0])
    return length < 0x1000_0000  # a first element longer than 256 MB is not a header


def describe(head: bytes) -> str:
    """A short guess of what a file no registered format recognises is, for error messages."""
    if not head:
        return "the file is empty"
    for sig, name in _OTHER_SIGNATURES:
        if head.startswith(sig):
            return f"it looks like {name}"
    text = head[:64].decode("utf-8", errors="replace")
    bad = sum(1 for ch in text if ch == "\ufffd")  # a cut multi-byte character at the end
    if bad <= 1 and all(ch.isprintable() or ch in "\r\n\t\ufffd" for ch in text):
        return "it looks like a text file"
    return "its first bytes match no image format CXR Lens reads"

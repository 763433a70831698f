"""What a compressed image stream declares about itself, read before anything decodes it.

A decoder allocates what the codestream's own header asks for, whatever the DICOM header or
the file name say. So the readers look at the codestream first — the JPEG frame header (SOF,
ITU-T T.81 §B.2.2, also JPEG-LS SOF55, T.87 §C.2.2), the JPEG 2000 image and tile size
marker (SIZ, T.800 §A.5.1), the PNG header (IHDR, PNG §11.2.2) — compare it with the
container and with a memory budget, and check that the stream is complete (a JPEG's end of
image marker after its scan, a JPEG 2000 end of codestream marker, a PNG IEND chunk).
Decoders fill a cut stream with grey and return a "good" image; these checks refuse it.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

#: JPEG start-of-frame markers: SOF0–3, 5–7, 9–11, 13–15 (T.81 Table B.1) and JPEG-LS SOF55.
SOF_MARKERS = frozenset([*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC)])
SOF_MARKERS = SOF_MARKERS | frozenset([*range(0xCD, 0xD0), 0xF7])
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RSTn: no length field
_SOS, _EOI = 0xDA, 0xD9
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_EOC = b"\xff\xd9"


class CodestreamError(ValueError):
    """The codestream is structurally broken; the message says how (for the user)."""


#: what the readers take: the bytes, or a read-only memory map of the file
ByteData = bytes | mmap.mmap


@dataclass(frozen=True)
class StreamInfo:
    """Size and sample layout a codestream declares, and whether it ends properly."""

    width: int
    height: int
    components: int
    precision: int  # bits per sample (the largest, for JPEG 2000 components of mixed depth)
    complete: bool
    syntax: str  # "JPEG", "JPEG-LS", "JPEG 2000" or "PNG"

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.precision <= 8 else 2 if self.precision <= 16 else 4

    @property
    def decoded_bytes(self) -> int:
        """Bytes the decoded image takes (one frame), as the codestream declares it."""
        return self.width * self.height * self.components * self.bytes_per_sample


def jpeg_info(data: ByteData) -> StreamInfo:
    """Walk a JPEG / JPEG-LS stream's markers: frame header, then is there an EOI after the scan.

    In entropy-coded data a 0xFF byte is followed by 0x00 (JPEG) or by a byte below 0x80
    (JPEG-LS), never by 0xD9, so an ``FF D9`` after the first scan header is the end of image.
    Padding or trailing bytes after it (DICOM pads fragments to an even length) are allowed.
    """
    if data[:2] != b"\xff\xd8":
        raise CodestreamError("it does not start with a JPEG start-of-image marker")
    pos, frame = 2, None
    n = len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            raise CodestreamError(f"a JPEG marker is missing at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == _EOI:
            raise CodestreamError("its JPEG data end before the first scan")
        if pos + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > n:
            break
        if marker in SOF_MARKERS:
            if length < 8:
                raise CodestreamError("its JPEG frame header is too short")
            precision, height, width, comps = struct.unpack_from(">BHHB", data, pos + 4)
            frame = (width, height, comps, precision, marker)
        elif marker == _SOS:
            if frame is None:
                raise CodestreamError("its JPEG scan comes before any frame header")
            complete = data.find(b"\xff\xd9", pos + 2 + length) >= 0
            width, height, comps, precision, sof = frame
            syntax = "JPEG-LS" if sof == 0xF7 else "JPEG"
            return StreamInfo(width, height, comps, precision, complete, syntax)
        pos += 2 + length
    raise CodestreamError("its JPEG data end inside the headers, before the first scan")


def j2k_info(data: bytes) -> StreamInfo:
    """Read a JPEG 2000 codestream's SIZ marker (raw codestream, or inside a JP2 wrapper).

    The stream is complete when, after stripping DICOM padding, it ends with EOC (``FF D9``).
    """
    start = data.find(_J2K_SOC_SIZ, 0, 4096)
    if start < 0:
        raise CodestreamError("no JPEG 2000 start-of-codestream and SIZ marker were found")
    siz = start + 4
    if siz + 38 > len(data):
        raise CodestreamError("its JPEG 2000 image size marker is cut short")
    (lsiz, _rsiz, xsiz, ysiz, xosiz, yosiz) = struct.unpack_from(">HHIIII", data, siz)
    (csiz,) = struct.unpack_from(">H", data, siz + 36)
    if csiz < 1 or lsiz != 38 + 3 * csiz or siz + 38 + 3 * csiz > len(data):
        raise CodestreamError("its JPEG 2000 image size marker is inconsistent")
    if xsiz <= xosiz or ysiz <= yosiz:
        raise CodestreamError("its JPEG 2000 image size marker declares an empty image")
    precision = max((data[siz + 38 + 3 * i] & 0x7F) + 1 for i in range(csiz))
    end = len(data)
    while end > 0 and data[end - 1] in (0x00, 0xFF):  # DICOM pads fragments to even length
        end -= 1
    complete = data[max(end - 2, 0) : end] == _EOC
    return StreamInfo(xsiz - xosiz, ysiz - yosiz, csiz, precision, complete, "JPEG 2000")


#: PNG colour type → samples per pixel after decoding (palette images become RGBA here).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}


def png_info(data: ByteData) -> StreamInfo:
    """The PNG header (IHDR) and whether every chunk fits in the file up to an IEND chunk."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise CodestreamError("its PNG header chunk (IHDR) is missing or cut short")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if colour not in _PNG_SAMPLES or depth not in (1, 2, 4, 8, 16):
        raise CodestreamError(f"its PNG header declares colour type {colour}, bit depth {depth}")
    return StreamInfo(
        width, height, _PNG_SAMPLES[colour], max(depth, 8), png_chunks_fit(data), "PNG"
    )


def png_chunks_fit(data: ByteData) -> bool:
    """True when every PNG chunk lies inside ``data`` and an IEND chunk ends it (PNG §5.3).

    A structural check only (lengths, not CRCs): it finds a file cut short, and a chunk length
    that claims gigabytes (OpenCV's PNG reader spends tens of seconds on one).
    """
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        if length > 0x7FFF_FFFF or end > len(data):
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = end
    return False

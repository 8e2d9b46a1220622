"""The hostile corpus (issue 13), generated in the test session, never committed: files made to break an
image server, each small on disk.

`make_corpus(folder, testdata)` writes them and returns their paths:
- a zero-byte file with each kind of suffix, and files with the wrong extension (a PNG named .svs, a
  slide named .jpg, text named .tiff);
- every file of shared/testdata/broken/ (real damaged files collected by libvips, Pillow, OSS-Fuzz);
- a real slide and real photos truncated at several offsets;
- a TIFF whose header claims 1,000,000 x 1,000,000 pixels (a few hundred bytes on disk);
- a PNG and a JPEG decompression bomb (a huge canvas of one colour, compressed to almost nothing);
- a GIF of 100,000 frames; a JPEG with an EXIF block of 60 kB repeated in APP1 segments.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pyvips

#: files of shared/testdata truncated at several offsets (a slide, a photo, a PNG)
TRUNCATED = ("svs/cmu-1-small-region.svs", "jpeg-png/2569067123_aca715a2ee_o.jpg", "jpeg-png/boxes.png")
OFFSETS = (0.02, 0.3, 0.7, 0.97)


def _tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose IFD says width x height, 8-bit RGB, one strip of 8 bytes."""
    entries = [
        (256, 4, 1, width),  # ImageWidth (LONG)
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 2),  # Photometric: RGB
        (273, 4, 1, 8),  # StripOffsets: right after the header
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 8),  # StripByteCounts: 8 bytes for 3 * 10^12 claimed
    ]
    ifd_offset = 16
    header = b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00" * 8
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return header + ifd + struct.pack("<I", 0)


def _png_bomb(side: int) -> bytes:
    """A side x side grey PNG whose IDAT is a few kB: every row is the same zero bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 frame header is rewritten to claim width x height."""
    data = bytearray(pyvips.Image.black(16, 16).jpegsave_buffer())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_frames(frames: int) -> bytes:
    """A 1x1 GIF89a of `frames` frames (each 12 bytes of image data)."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (
        b"\x21\xf9\x04\x00\x00\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    )
    return head + loop + frame * frames + b"\x3b"


def _huge_exif(testdata: Callable[[str], Path]) -> bytes:
    """A real photo with 20 APP1 (EXIF) segments of 60 kB each inserted after SOI."""
    photo = testdata("jpeg-png/2569067123_aca715a2ee_o.jpg").read_bytes()
    payload = b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + b"\xff" * 60_000
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return photo[:2] + segment * 20 + photo[2:]


def make_corpus(folder: Path, testdata: Callable[[str], Path]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, bytes] = {
        "empty.svs": b"",
        "empty.jpg": b"",
        "empty.png": b"",
        "empty.tiff": b"",
        "text.tiff": b"this is not a TIFF\n" * 10,
        "million-by-million.tif": _tiff_claiming(10**6, 10**6),
        "bomb.png": _png_bomb(30_000),
        "bomb.jpg": _jpeg_claiming(65_000, 65_000),
        "frames.gif": _gif_frames(100_000),
        "huge-exif.jpg": _huge_exif(testdata),
        "png-named.svs": testdata("jpeg-png/boxes.png").read_bytes(),
    }
    paths = []
    for name, data in made.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    slide = folder / "slide-named.jpg"
    shutil.copyfile(testdata("svs/cmu-1-small-region.svs"), slide)
    paths.append(slide)
    for relative in TRUNCATED:
        original = testdata(relative).read_bytes()
        for fraction in OFFSETS:
            cut = folder / f"cut{int(fraction * 100):02d}-{Path(relative).name}"
            cut.write_bytes(original[: int(len(original) * fraction)])
            paths.append(cut)
    for broken in sorted(testdata("broken").iterdir()):
        if broken.is_file():
            shutil.copyfile(broken, folder / f"broken-{broken.name}")
            paths.append(folder / f"broken-{broken.name}")
    return paths

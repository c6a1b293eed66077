"""Read the partition table of a disk image: MBR (with logical partitions) and GPT.

Partition numbers are the ones fdisk and the kernel show (``disk.img2``, ``sda5``): MBR
primary slots are 1–4 (an empty slot keeps its number free), logical partitions count from 5
in the order of the extended-partition chain, and a GPT partition is its entry index + 1.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

SECTOR = 512  # an MBR has no notion of sector size; a GPT is probed at 512 and 4096
_EXTENDED = frozenset({0x05, 0x0F, 0x85})
_GPT_PROTECTIVE = 0xEE
_MAX_LOGICAL = 256
_MAX_GPT_ENTRIES_BYTES = 4 << 20


class PartitionError(Exception):
    """The image's partition table is unusable, or has no such partition."""


@dataclass(frozen=True)
class Partition:
    number: int
    offset: int  # bytes from the start of the image
    size: int  # bytes
    extended: bool = False  # an MBR extended partition: a container, not a filesystem


@dataclass(frozen=True)
class PartitionTable:
    kind: Literal["dos", "gpt"]
    sector_size: int
    partitions: tuple[Partition, ...]

    def get(self, number: int) -> Partition:
        for part in self.partitions:
            if part.number == number:
                return part
        numbers = ", ".join(str(p.number) for p in self.partitions if not p.extended)
        have = f"it has {numbers}" if numbers else "it has none"
        raise PartitionError(f"no partition {number} in the {self.kind} partition table ({have})")


def read_table(image: BinaryIO) -> PartitionTable | None:
    """The image's partition table, or None when it has none (e.g. it is just a filesystem)."""
    size = image.seek(0, os.SEEK_END)
    mbr = _read(image, 0, SECTOR)
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        return None
    entries = [_mbr_entry(mbr, 446 + 16 * i) for i in range(4)]
    if any(boot not in (0x00, 0x80) for boot, _, _, _ in entries) or _is_boot_sector(mbr):
        return None  # a filesystem's boot sector (FAT, NTFS, exFAT) also ends in 55 AA
    if any(kind == _GPT_PROTECTIVE for _, kind, _, _ in entries):
        return _read_gpt(image, size)
    return PartitionTable("dos", SECTOR, tuple(_read_dos(image, entries)))


def find_partition(path: str | os.PathLike[str], number: int) -> Partition:
    """Partition ``number`` of the image at ``path``, checked to be a usable, whole partition."""
    with open(path, "rb") as image:
        table = read_table(image)
        size = image.seek(0, os.SEEK_END)
    if table is None:
        raise PartitionError("it has no partition table (give no partition number to use "
                             "the whole image)")
    part = table.get(number)
    if part.extended:
        raise PartitionError(f"partition {number} is an extended partition (a container of "
                             "logical partitions, numbered from 5)")
    if part.size <= 0:
        raise PartitionError(f"partition {number} is empty")
    if part.offset + part.size > size:
        raise PartitionError(f"partition {number} ends beyond the end of the image "
                             f"({part.offset + part.size} > {size} bytes): truncated image?")
    return part


def _read(image: BinaryIO, offset: int, length: int) -> bytes:
    image.seek(offset)
    return image.read(length)


def _mbr_entry(sector: bytes, at: int) -> tuple[int, int, int, int]:
    """(boot flag, type, first LBA, number of sectors) of one 16-byte MBR entry."""
    boot, kind, start, count = struct.unpack_from("<B3xB3xII", sector, at)
    return boot, kind, start, count


def _is_boot_sector(sector: bytes) -> bool:
    return (sector[3:11] in (b"NTFS    ", b"EXFAT   ")
            or sector[0x36:0x39] == b"FAT" or sector[0x52:0x57] == b"FAT32")


def _read_dos(image: BinaryIO, entries: list[tuple[int, int, int, int]]) -> Iterator[Partition]:
    for slot, (_, kind, start, count) in enumerate(entries, start=1):
        if kind == 0 or count == 0:
            continue
        extended = kind in _EXTENDED
        yield Partition(slot, start * SECTOR, count * SECTOR, extended)
        if extended:
            yield from _read_logical(image, start)


def _read_logical(image: BinaryIO, ext_start: int) -> Iterator[Partition]:
    """Walk the chain of extended boot records; each holds one logical partition."""
    number = 5
    ebr_lba = ext_start
    seen: set[int] = set()
    while ebr_lba not in seen and len(seen) < _MAX_LOGICAL:
        seen.add(ebr_lba)
        ebr = _read(image, ebr_lba * SECTOR, SECTOR)
        if len(ebr) < SECTOR or ebr[510:512] != b"\x55\xaa":
            return
        _, kind, start, count = _mbr_entry(ebr, 446)
        if kind != 0 and count != 0 and kind not in _EXTENDED:
            yield Partition(number, (ebr_lba + start) * SECTOR, count * SECTOR)
            number += 1
        _, next_kind, next_start, next_count = _mbr_entry(ebr, 462)
        if next_kind not in _EXTENDED or next_count == 0:
            return
        ebr_lba = ext_start + next_start


def _read_gpt(image: BinaryIO, size: int) -> PartitionTable:
    problems = []
    for sector_size in (512, 4096):
        header = _read(image, sector_size, sector_size)
        if header[:8] != b"EFI PART":
            continue
        try:
            return _gpt_table(image, header, sector_size)
        except PartitionError as exc:
            problems.append(str(exc))
        backup = _read(image, (size // sector_size - 1) * sector_size, sector_size)
        if backup[:8] == b"EFI PART":
            try:
                return _gpt_table(image, backup, sector_size)
            except PartitionError as exc:
                problems.append(f"backup: {exc}")
        break
    detail = "; ".join(problems) or "no GPT header"
    raise PartitionError(f"protective MBR but no usable GPT ({detail})")


def _gpt_table(image: BinaryIO, header: bytes, sector_size: int) -> PartitionTable:
    header_size, header_crc = struct.unpack_from("<II", header, 12)
    if not 92 <= header_size <= sector_size:
        raise PartitionError(f"GPT header size {header_size} is invalid")
    blank = header[:16] + b"\0\0\0\0" + header[20:header_size]
    if zlib.crc32(blank) != header_crc:
        raise PartitionError("GPT header checksum mismatch")
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", header, 72)
    if entry_size < 128 or entry_size % 8 or count * entry_size > _MAX_GPT_ENTRIES_BYTES:
        raise PartitionError(f"GPT entry array ({count} × {entry_size} bytes) is invalid")
    array = _read(image, entries_lba * sector_size, count * entry_size)
    if len(array) != count * entry_size or zlib.crc32(array) != entries_crc:
        raise PartitionError("GPT partition entries checksum mismatch")
    parts = []
    for index in range(count):
        at = index * entry_size
        if array[at:at + 16] == bytes(16):
            continue  # unused entry
        first, last = struct.unpack_from("<QQ", array, at + 32)
        parts.append(Partition(index + 1, first * sector_size, (last - first + 1) * sector_size))
    return PartitionTable("gpt", sector_size, tuple(parts))

"""A seeded generator of malformed captures made from a real one (the first records of
``data/captures/site_a.pcap``), for the robustness tests of ``marlids edge extract``.

Each :class:`Case` says what the reader must do with it:

* ``"error"`` — not a usable capture (a cut inside the file header, a link type NFStream cannot meter):
  exit 2 with one ``marlids: error: …`` line naming the file;
* ``"damaged"`` — records are lost (a cut inside a record header or its data, a bad pcapng block trailer,
  a block cut short, garbage after the last record, an interface of another link type): exit 0 with a
  warning naming the file and ``record index`` = ``lost_at`` (the packets read before the damage);
* ``"survive"`` — the file structure holds but the contents are hostile (flipped bytes, bogus IPv4 header
  lengths, total lengths and fragment offsets, a link type that does not match the frames): exit 0, and
  a warning whenever fewer packets were read than the file holds.

Formats: pcap (https://www.tcpdump.org/manpages/pcap-savefile.5.html) and pcapng
(draft-ietf-opsawg-pcapng: SHB, IDB and EPB blocks).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

#: Odd link types: USER0, Linux cooked v2 (NFStream 6.6 meters none), raw IP (14, not metered), 0xFFFF, 802.11.
ODD_LINK_TYPES = (147, 276, 14, 65535, 105)


@dataclass(frozen=True)
class Case:
    """One malformed capture: file ``name`` with ``data``; ``expect`` as in the module docstring; ``lost_at``
    the 0-based index of the first record that cannot be read (``damaged`` cases); ``records`` how many
    records the file would hold undamaged."""

    name: str
    data: bytes
    expect: str
    records: int
    lost_at: int | None = None


def read_records(pcap: Path, n: int) -> list[tuple[int, int, bytes]]:
    """The first ``n`` records of a little-endian microsecond pcap: ``(sec, usec, frame)``."""
    raw = pcap.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1", "expected a little-endian microsecond pcap"
    off, out = 24, []
    while len(out) < n and off + 16 <= len(raw):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", raw, off)
        out.append((sec, usec, raw[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return out


def pcap_bytes(records: list[tuple[int, int, bytes]], link_type: int = 1) -> tuple[bytes, list[int]]:
    """A pcap file of ``records`` and the byte offset of each record header."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link_type))
    offsets = []
    for sec, usec, frame in records:
        offsets.append(len(out))
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    return bytes(out), offsets


def _block(kind: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def pcapng_bytes(records: list[tuple[int, int, bytes]], link_types: tuple[int, ...] = (1,),
                 interface_of=lambda i: 0) -> tuple[bytes, list[int]]:
    """A pcapng file (one section, one IDB per link type, one EPB per record on ``interface_of(i)``) and
    the byte offset of each EPB."""
    out = bytearray(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
    for lt in link_types:
        out += _block(1, struct.pack("<HHI", lt, 0, 65535))
    offsets = []
    for i, (sec, usec, frame) in enumerate(records):
        ts = sec * 1_000_000 + usec
        offsets.append(len(out))
        out += _block(6, struct.pack("<IIIII", interface_of(i), ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
                      + frame)
    return bytes(out), offsets


def _ipv4_offsets(records) -> list[int]:
    """Indexes of the Ethernet/IPv4 records."""
    return [i for i, (_, _, f) in enumerate(records) if len(f) >= 34 and f[12:14] == b"\x08\x00"]


def _with_ip_field(records, rng: random.Random, how: str, count: int = 12):
    """``records`` with the IPv4 header of ``count`` random IPv4 packets made bogus."""
    recs = list(records)
    for i in rng.sample(_ipv4_offsets(recs), count):
        sec, usec, f = recs[i]
        b = bytearray(f)
        if how == "ihl":  # header length below the minimum (0–4 words) or beyond the frame (15 words)
            b[14] = 0x40 | rng.choice([0, 1, 4, 15])
        elif how == "total_length":
            b[16:18] = struct.pack("!H", rng.choice([0, 1, 19, 65535]))
        elif how == "fragment":  # a random offset, sometimes with More Fragments
            b[20:22] = struct.pack("!H", (rng.choice([0, 0x2000]) | rng.randrange(1, 0x1FFF)))
        recs[i] = (sec, usec, bytes(b))
    return recs


def _flip(data: bytes, rng: random.Random, positions: list[int]) -> bytes:
    b = bytearray(data)
    for p in positions:
        b[p] ^= 1 << rng.randrange(8)
    return bytes(b)


def malformed_captures(base: Path, seed: int = 17, n_records: int = 300) -> list[Case]:
    """At least 40 malformed captures made from the first ``n_records`` records of ``base`` (module docstring),
    the same for the same ``seed``."""
    rng = random.Random(seed)
    recs = read_records(base, n_records)
    n = len(recs)
    pcap, offs = pcap_bytes(recs)
    ng, ng_offs = pcapng_bytes(recs)
    cases: list[Case] = [Case("pcap_cut_in_file_header.pcap", pcap[:rng.randrange(5, 24)], "error", n)]
    for j in range(4):  # cut inside a record header
        k = rng.randrange(1, n)
        cases.append(Case(f"pcap_cut_in_record_header_{j}.pcap", pcap[:offs[k] + rng.randrange(1, 16)], "damaged", n, k))
    for j in range(4):  # cut inside a record's data
        k = rng.randrange(1, n)
        caplen = len(recs[k][2])
        cases.append(Case(f"pcap_cut_in_record_data_{j}.pcap", pcap[:offs[k] + 16 + rng.randrange(1, caplen)],
                          "damaged", n, k))
    for j in range(2):  # a record length far beyond the file
        k = rng.randrange(0, n)
        b = bytearray(pcap)
        b[offs[k] + 8:offs[k] + 12] = struct.pack("<I", rng.choice([0x7FFFFFFF, 10_000_000]))
        cases.append(Case(f"pcap_huge_record_length_{j}.pcap", bytes(b), "damaged", n, k))
    cases.append(Case("pcap_garbage_after_last_record.pcap", pcap + bytes(rng.randrange(256) for _ in range(11)),
                      "damaged", n + 1, n))
    cases.append(Case("pcap_no_records.pcap", pcap[:24], "survive", 0))
    for j in range(4):  # bytes flipped inside frames only: every record still reads
        positions = [offs[k] + 16 + rng.randrange(len(recs[k][2])) for k in rng.sample(range(n), 25)]
        cases.append(Case(f"pcap_flipped_frame_bytes_{j}.pcap", _flip(pcap, rng, positions), "survive", n))
    for j in range(4):  # bytes flipped anywhere after the file header, record headers included
        positions = [rng.randrange(24, len(pcap)) for _ in range(rng.choice([1, 3, 20]))]
        cases.append(Case(f"pcap_flipped_bytes_{j}.pcap", _flip(pcap, rng, positions), "survive", n))
    for lt in ODD_LINK_TYPES:
        cases.append(Case(f"pcap_link_type_{lt}.pcap", pcap_bytes(recs, lt)[0], "error", n))
    cases.append(Case("pcap_ethernet_frames_declared_raw_ip.pcap", pcap_bytes(recs, 101)[0], "survive", n))
    for how, count in (("ihl", 3), ("total_length", 2), ("fragment", 3)):
        for j in range(count):
            cases.append(Case(f"pcap_bogus_ip_{how}_{j}.pcap", pcap_bytes(_with_ip_field(recs, rng, how))[0],
                              "survive", n))
    # pcapng
    for j in range(2):  # cut inside a block header
        k = rng.randrange(1, n)
        cases.append(Case(f"pcapng_cut_in_block_header_{j}.pcapng", ng[:ng_offs[k] + rng.randrange(1, 8)],
                          "damaged", n, k))
    for j in range(2):  # cut inside a block body
        k = rng.randrange(1, n)
        cases.append(Case(f"pcapng_cut_in_block_body_{j}.pcapng", ng[:ng_offs[k] + 8 + rng.randrange(1, 24)],
                          "damaged", n, k))
    for j in range(3):  # a bad trailing block length
        k = rng.randrange(0, n)
        end = ng_offs[k + 1] if k + 1 < n else len(ng)
        b = bytearray(ng)
        b[end - 4:end] = struct.pack("<I", rng.choice([0, 4, 0xFFFFFFFF, struct.unpack_from("<I", ng, end - 4)[0] + 4]))
        cases.append(Case(f"pcapng_bad_block_trailer_{j}.pcapng", bytes(b), "damaged", n, k))
    for j in range(2):
        positions = [ng_offs[k] + 28 + rng.randrange(len(recs[k][2])) for k in rng.sample(range(n), 20)]
        cases.append(Case(f"pcapng_flipped_frame_bytes_{j}.pcapng", _flip(ng, rng, positions), "survive", n))
    for lt in (147, 276):
        cases.append(Case(f"pcapng_link_type_{lt}.pcapng", pcapng_bytes(recs, (lt,))[0], "error", n))
    k = rng.randrange(n // 3, n)
    cases.append(Case("pcapng_second_interface_other_link_type.pcapng",
                      pcapng_bytes(recs, (1, 147), interface_of=lambda i: int(i >= k))[0], "damaged", n, k))
    return cases

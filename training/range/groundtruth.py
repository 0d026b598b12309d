"""The ground-truth CSV written next to every capture the range records or mixes.

One row per attack execution, exactly these columns (:data:`GROUND_TRUTH_COLUMNS`):

``start_ts``, ``end_ts``
    Epoch seconds (float) taken just before and just after the attack command ran.
``attacker_ip``
    The address the attack traffic comes from (one address; the mixer maps spoofed sources onto a
    small set and writes one row per mapped address).
``victim_ip``
    An address, or a CIDR (``10.77.1.0/24``) for sweeps.
``attack``
    Technique name from :mod:`training.range.techniques` (or the mixer's name for a public capture).
``mitre_technique``
    MITRE ATT&CK technique ID, e.g. ``T1046``.
``tool_command``
    The exact command line that ran (or the mixer's replay description).
"""

from __future__ import annotations

import csv
import ipaddress
from dataclasses import asdict, dataclass, fields
from pathlib import Path

GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "start_ts",
    "end_ts",
    "attacker_ip",
    "victim_ip",
    "attack",
    "mitre_technique",
    "tool_command",
)


@dataclass(frozen=True)
class GroundTruthRow:
    """One attack execution; field order is :data:`GROUND_TRUTH_COLUMNS`."""

    start_ts: float
    end_ts: float
    attacker_ip: str
    victim_ip: str
    attack: str
    mitre_technique: str
    tool_command: str


assert tuple(f.name for f in fields(GroundTruthRow)) == GROUND_TRUTH_COLUMNS


def write_ground_truth(rows: list[GroundTruthRow], path: str | Path) -> Path:
    """Write rows (sorted by ``start_ts``) as the ground-truth CSV.

    Parameters
    ----------
    rows : list of GroundTruthRow
    path : str or Path
        Output file, conventionally ``<capture stem>.groundtruth.csv``.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(GROUND_TRUTH_COLUMNS))
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r.start_ts, r.attacker_ip)):
            d = asdict(row)
            d["start_ts"] = f"{row.start_ts:.6f}"
            d["end_ts"] = f"{row.end_ts:.6f}"
            writer.writerow(d)
    return path


def read_ground_truth(path: str | Path):
    """Read and validate a ground-truth CSV.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    pandas.DataFrame
        Columns :data:`GROUND_TRUTH_COLUMNS`; ``start_ts``/``end_ts`` float epoch seconds, the rest str.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the header is not exactly :data:`GROUND_TRUTH_COLUMNS`, a timestamp is not a number,
        ``end_ts < start_ts``, or an address is not an IP address (``victim_ip`` may be a CIDR).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth {str(path)!r} does not exist")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(df.columns) != GROUND_TRUTH_COLUMNS:
        raise ValueError(
            f"ground truth {str(path)!r} has columns {list(df.columns)}; "
            f"expected exactly {list(GROUND_TRUTH_COLUMNS)}"
        )
    for col in ("start_ts", "end_ts"):
        try:
            df[col] = df[col].astype(float)
        except ValueError as exc:
            raise ValueError(f"ground truth {str(path)!r}: column {col!r} is not numeric ({exc})") from None
    bad = df[df["end_ts"] < df["start_ts"]]
    if len(bad):
        raise ValueError(
            f"ground truth {str(path)!r}: row {int(bad.index[0])} has end_ts < start_ts "
            f"({bad.iloc[0]['end_ts']} < {bad.iloc[0]['start_ts']})"
        )
    for i, (a, v) in enumerate(zip(df["attacker_ip"], df["victim_ip"], strict=True)):
        try:
            ipaddress.ip_address(a)
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(
                f"ground truth {str(path)!r}: row {i} attacker_ip={a!r} victim_ip={v!r}; "
                "expected an IP address and an IP address or CIDR"
            ) from None
    return df

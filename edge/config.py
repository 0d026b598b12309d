"""Settings of the edge daemon (``marlids edge run``): one dataclass, its CLI options generated from it.

Kept apart from :mod:`edge.daemon` so that building the command line imports no NumPy, pandas or gRPC.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from edge.paths import BUNDLED_POLICY
from edge.settings import setting
from edge.transport.buffer import BUFFER_POLICIES
from edge.transport.tls import TlsFiles, parse_hostport

#: Window length, seconds: every window statistic is per window of this length (the policy is trained on it).
DEFAULT_WINDOW_S = 5.0
#: NFStream flow idle and active timeouts, seconds (a flow idle this long expires; one older is cut).
DEFAULT_IDLE_TIMEOUT_S = 120
DEFAULT_ACTIVE_TIMEOUT_S = 1800
#: Site and device ids the cloud accepts (``cloud/schemas.py`` ID_PATTERN).
SITE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


@dataclass
class EdgeConfig:
    """Settings of one edge daemon (one site).

    Parameters
    ----------
    site_id : str
        Site id written into every window (letters, digits, ``._:@/-``; ≤ 128 characters).
    fog : str
        ``HOST:PORT`` of the fog coordinator.
    pcap : Path, optional
        Capture to replay (exactly one of ``pcap`` and ``iface``).
    iface : str, optional
        Network interface to capture live (needs CAP_NET_RAW).
    replay_speed : float, default 1.0
        Replay clock = capture clock × speed; ``0`` sends every window as fast as possible.
    fusion_dir : Path
        Folder with ``fusion.json`` (scaler and scorer), normally the exported policy folder.
    window_s : float, default 5.0
        Window length in seconds (must match the fog's other sites and the trained policy).
    devices : {"local", "all"}
        Which addresses are devices (:mod:`edge.windows`).
    buffer_path : Path, optional
        The on-disk buffer (default :func:`default_buffer_path`).
    buffer_capacity : int, default 20000
        Most buffered messages.
    buffer_policy : {"drop-oldest", "block"}
        What happens when the buffer is full (:mod:`edge.transport.buffer`).
    tls : TlsFiles or None
        Client TLS files; ``None`` = plaintext (the caller has checked ``--insecure``).
    reconnect_initial_s, reconnect_max_s : float
        Backoff between connection attempts (doubles from the first to the second).
    max_inflight : int, default 2048
        Messages sent but not yet acknowledged before the sender waits.
    live_close_delay_s : float, optional
        Live capture only: seconds after a window's end before it is closed (default
        :data:`edge.live.DEFAULT_CLOSE_DELAY_S`).
    grace_s : float, optional
        Grace period of a new site baseline, seconds (default the policy's, 60).
    baseline_path : Path, optional
        Where the site baseline is kept (default :func:`default_baseline_path`).
    reset_baseline : bool, default False
        Ignore a saved baseline and learn a new one.
    windows_out : Path, optional
        Also write each closed window's key and peers (``site_id, device_id, t_start, t_end, peers``) to this
        Parquet file, one row group per window slot (:class:`WindowLog`): what ``marlids demo`` labels against
        the ground truth, so the captures are metered once.
    backend : {"auto", "onnx", "torch"}, optional
        How MiniLM and the temporal scorer run (:func:`edge.onnx_embed.resolve_backend`: ``auto`` is ONNX
        whenever the ONNX model folder is present; default ``$MARLIDS_EDGE_BACKEND`` or ``auto``).
    """

    site_id: str = setting(help="Site id written into every window (letters, digits, ._:@/-).", flag="--site")
    fog: str = setting(help="HOST:PORT of the fog coordinator (marlids fog serve).")
    pcap: Path | None = setting(None, help="Replay this pcap/pcapng capture on its own clock.")
    iface: str | None = setting(None, help="Capture live on this interface (needs CAP_NET_RAW).")
    replay_speed: float = setting(1.0, help="Replay clock = capture clock × X; 0 = as fast as possible.")
    fusion_dir: Path = setting(BUNDLED_POLICY, flag="--fusion", show_default=False,
                               help="Folder with fusion.json (default: the bundled policy models/defender).")
    window_s: float = setting(DEFAULT_WINDOW_S, flag="--window", min=0.001,
                              help="Window length in seconds (as the policy was trained).")
    devices: str = setting("local", help="Which addresses are devices: 'local' (private, link-local, ULA) or 'all'.")
    buffer_path: Path | None = setting(None, flag="--buffer",
                                       help="On-disk buffer (default ~/.cache/marlids/edge/SITE.sqlite).")
    buffer_capacity: int = setting(20000, flag="--buffer-max", min=1, help="Most buffered messages.")
    buffer_policy: str = setting("drop-oldest",
                                 help="When the buffer is full: 'drop-oldest' or 'block' (pause the input).")
    tls: TlsFiles | None = None
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 5.0
    max_inflight: int = 2048
    live_close_delay_s: float | None = setting(None, flag="--close-delay", min=0.0,
                                               help="Live capture: seconds after a window's end before it is closed "
                                                    "(default: the flow timeouts + 1 s).")
    grace_s: float | None = setting(None, flag="--grace", min=0.0,
                                    help="Grace period in seconds: the site's baseline is learned from its first "
                                         "GRACE seconds of traffic, during which nothing is alerted (default: the "
                                         "policy's, 60).")
    baseline_path: Path | None = setting(None, flag="--baseline",
                                         help="Where the site baseline is kept and resumed from "
                                              "(default ~/.cache/marlids/edge/SITE.baseline.json).")
    reset_baseline: bool = setting(False, flag="--reset-baseline",
                                   help="Forget a saved baseline and learn a new one (a new grace period).")
    backend: str | None = None
    windows_out: Path | None = setting(None, help="Also write each window's key and peers to this Parquet file "
                                                  "(complete when the daemon stops): label them against a ground "
                                                  "truth without metering the capture again.")

    def validate(self, *, source: bool = True) -> None:
        """Check the settings (no I/O beyond file existence); ``source=False`` skips the ``pcap``/``iface``
        checks (a caller-provided source). The capture itself is checked by :class:`edge.daemon.EdgeDaemon`.

        Raises
        ------
        ValueError
            Naming the bad setting and what is allowed.
        FileNotFoundError
            If the capture or fusion folder is missing.
        """
        if not SITE_ID_PATTERN.match(self.site_id or ""):
            raise ValueError(f"--site {self.site_id!r} is invalid: 1–128 letters, digits or ._:@/- "
                             "starting with a letter or digit")
        parse_hostport(self.fog, "--fog")
        if source and (self.pcap is None) == (self.iface is None):
            raise ValueError("give exactly one of --pcap FILE and --iface IFACE")
        if not (isinstance(self.replay_speed, (int, float)) and math.isfinite(self.replay_speed)
                and self.replay_speed >= 0):
            raise ValueError(f"--replay-speed must be ≥ 0 (0 = as fast as possible), got {self.replay_speed!r}")
        if not self.window_s > 0:
            raise ValueError(f"--window must be > 0 seconds, got {self.window_s!r}")
        if self.buffer_policy not in BUFFER_POLICIES:
            raise ValueError(f"--buffer-policy must be one of {', '.join(BUFFER_POLICIES)}, got {self.buffer_policy!r}")
        if self.buffer_capacity < 1:
            raise ValueError(f"--buffer-max must be ≥ 1 message, got {self.buffer_capacity!r}")
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight must be ≥ 1, got {self.max_inflight!r}")
        if self.grace_s is not None and not (isinstance(self.grace_s, (int, float)) and math.isfinite(self.grace_s)
                                             and self.grace_s >= 0):
            raise ValueError(f"--grace must be a number of seconds ≥ 0, got {self.grace_s!r}")
        if source and self.pcap is not None and not Path(self.pcap).is_file():
            raise FileNotFoundError(f"--pcap {self.pcap}: no such file")
        if not (Path(self.fusion_dir) / "fusion.json").is_file():
            raise FileNotFoundError(f"--fusion {self.fusion_dir}: no fusion.json (expected an exported policy "
                                    "folder made by `marlids train`, or a folder written by FusionPipeline.save)")

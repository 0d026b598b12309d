"""Layout of a window slice: the counters one flow keeps per window it touches.

:class:`edge.flows.WindowSlices` (the NFStream plugin) fills them; the window builder
(:mod:`edge.windows`) and the live stitcher (:mod:`edge.live`) read them. Kept apart from
:mod:`edge.flows` so that the edge daemon's process, which only reads slices that a metering child
produced, never imports NFStream (and with it pandas, about 40 MiB).

A slice is a list of :data:`SLICE_LEN` floats: packets and bytes (IP size) per direction, TCP flag
counts (pure SYN per direction, SYN-ACK, RST, FIN, PSH, ECE/CWR), inter-arrival times (count, sum, sum of
squares, min, max; ms) and packet sizes (sum of squares, min, max; bytes), and the first and last packet
time (ms since the epoch).
"""

# source → destination / destination → source packets and bytes
S2D_PKTS, D2S_PKTS, S2D_BYTES, D2S_BYTES = 0, 1, 2, 3
# TCP flags: pure SYN per direction, SYN-ACK, RST, FIN, PSH, ECE or CWR
S2D_SYN_ONLY, D2S_SYN_ONLY, SYNACK, RST, FIN, PSH, ECE_CWR = 4, 5, 6, 7, 8, 9, 10
# inter-arrival times (ms): count, sum, sum of squares, min, max
IAT_N, IAT_SUM, IAT_SUMSQ, IAT_MIN, IAT_MAX = 11, 12, 13, 14, 15
# packet sizes (bytes): sum of squares, min, max; first and last packet time (ms since the epoch)
SIZE_SUMSQ, SIZE_MIN, SIZE_MAX, FIRST_MS, LAST_MS = 16, 17, 18, 19, 20
#: Floats per slice.
SLICE_LEN = 21

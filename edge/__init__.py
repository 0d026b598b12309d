"""Edge pipeline: packets → bidirectional flows → per-device windows → protocol text → MiniLM.

Runs on each site (Raspberry Pi / Jetson class). Nothing here imports Ray or FastAPI.
"""

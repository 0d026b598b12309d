"""marlids training component (see ../shared/DESIGN.md)."""

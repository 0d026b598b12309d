"""marlids fog component (see ../shared/DESIGN.md)."""

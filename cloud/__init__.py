"""marlids cloud component (see ../shared/DESIGN.md)."""

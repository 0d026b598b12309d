"""marlids experiments component (see ../shared/DESIGN.md)."""

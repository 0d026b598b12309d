"""Maintenance scripts for the cloud component (run as modules)."""

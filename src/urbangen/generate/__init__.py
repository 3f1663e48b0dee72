"""Sharded, resumable generation of candidates; MCOC filtering; label rectification; the fast engine.

See docs/generation.md. Modules are imported on use (no work at import time).
"""

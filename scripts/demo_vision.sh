# Sourced by scripts/demo: vision scans (none until the vision pipeline lands).
:

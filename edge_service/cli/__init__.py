"""Command-line entry points. Only these own the process (printing, exit codes)."""

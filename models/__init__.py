"""Shipped models and the code that trains them (not part of the installed service)."""

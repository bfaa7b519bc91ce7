"""The bottom layer: user-facing errors, atomic file I/O and the offline asset locations.

Imports no other uniguard package, so every layer above may use it.
"""

"""uniguard: evolutionary model merging for efficient guardrail classifiers.

The product lives in the top-level packages `synth`, `trainers`, `operators`, `engine`, `fitness`
and `experiments`; this package holds what they share: the CLI, user-facing errors, file I/O and
the offline asset locations.
"""

__version__ = "0.1.0"

"""User-facing errors: one line naming the file, the key or field, and what was expected.

The CLI turns any `HydraError` into that line on stderr and exit code 2, without a traceback.
"""


class HydraError(Exception):
    """Bad input or configuration that the user can fix."""


class InputError(HydraError, ValueError):
    """A file or argument does not have the expected content."""


class CheckpointError(HydraError, ValueError):
    """A checkpoint is missing, or its keys or shapes do not match the model."""


class ConfigError(HydraError, ValueError):
    """A configuration value is out of range or inconsistent."""

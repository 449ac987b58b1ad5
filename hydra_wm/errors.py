"""User-facing errors: one line naming the file, the key or field, and what was expected.

The CLI turns any `HydraError` into that line on stderr and an exit code, without a traceback: `EXIT_BAD_INPUT`
for bad input, an unwritable output or a bad checkpoint; `EXIT_SOME_FAILED` when a command finished but some of
its items (samples) failed, which it lists (`SomeFailed`). docs/cli.md lists every exit code.
"""

EXIT_BAD_INPUT = 2
"""Exit code for bad input, an output that cannot be written, a bad checkpoint: nothing (more) was done."""
EXIT_SOME_FAILED = 3
"""Exit code of a command that finished but skipped some items (samples) that failed; it lists them."""


class HydraError(Exception):
    """Bad input or configuration that the user can fix."""

    exit_code = EXIT_BAD_INPUT


class InputError(HydraError, ValueError):
    """A file or argument does not have the expected content."""


class CheckpointError(HydraError, ValueError):
    """A checkpoint is missing, or its keys, shapes, dtypes or values do not fit the model."""


class ConfigError(HydraError, ValueError):
    """A configuration value is out of range or inconsistent."""


class OutputError(HydraError):
    """An output path cannot be written: a read-only file system, a full disk, a file where a folder is needed."""


class SomeFailed(HydraError):
    """A command finished, but some items failed; they were listed (and the message says where)."""

    exit_code = EXIT_SOME_FAILED

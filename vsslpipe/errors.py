"""Errors that are the user's to fix (bad file, bad parameter) as opposed to bugs.

The CLI catches :class:`VsslpipeError` and prints one line instead of a traceback
(``VSSLPIPE_DEBUG=1`` shows the traceback).
"""


class VsslpipeError(Exception):
    """A mistake in the user's input: message names the file or parameter and the reason."""


class ConfigError(VsslpipeError):
    """A bad or unknown parameter in params.yaml or on the command line."""


class DataError(VsslpipeError):
    """A bad input file (split list, video, HDF5 store)."""


class NotImplementedStageError(VsslpipeError):
    """A stage whose issue has not landed yet."""

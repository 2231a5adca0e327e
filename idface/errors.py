"""Errors a user can act on. Their message is one line that names the problem; entry points
(CLI, app) show it instead of a stack trace."""


class IdfaceError(Exception):
    """Base class for every error idface reports to a user."""


class InputError(IdfaceError, ValueError):
    """The user's input (image, mask, label map, argument) cannot be used as given."""


class NoFaceError(InputError):
    """No usable face was found in an image."""


class WeightsNotFoundError(IdfaceError, FileNotFoundError):
    """Model weights could not be located; the message lists every place that was tried."""


class UnavailableError(IdfaceError, RuntimeError):
    """A feature cannot run on this machine (missing weights, missing package); says why."""

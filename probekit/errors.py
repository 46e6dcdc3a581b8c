"""Errors probekit raises for bad input. Each message names the problem and the fix."""


class ProbekitError(ValueError):
    """Base class: bad input or an impossible request, raised before any work is done."""


class ModelLoadError(ProbekitError, RuntimeError):
    """A model could not be loaded; the message says what was tried and how to fix it."""


class HookError(ProbekitError):
    """An unknown hook name or pattern; the message lists valid hooks."""


class PositionError(ProbekitError):
    """A position selector that does not fit the prompts."""


class DataError(ProbekitError):
    """A malformed dataset (CSV), a missing word, a word that tokenizes badly, too few examples."""


class ProbeMismatchError(ProbekitError):
    """A probe artifact loaded onto a model or hook it was not trained for."""


class ActivationError(ProbekitError):
    """Activations that cannot be used (NaN/inf, wrong shape)."""

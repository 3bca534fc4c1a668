"""Exceptions that the CLI turns into one-line messages instead of tracebacks."""


class UserError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class MissingDependency(UserError):
    """An optional package is not installed; the message names the pip extra."""

    def __init__(self, package: str, extra: str, feature: str):
        super().__init__(
            f"{feature} needs the '{package}' package: pip install 'imaginarynet[{extra}]'"
        )


def require(module: str, extra: str, feature: str):
    """Import an optional heavy module, or fail naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(module.split(".")[0], extra, feature) from exc


class WorkerDiedError(Exception):
    """A worker process or actor failed; reported in one line, exit status 1."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT: finished work is committed, the run stops, exit status 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StorageError(Exception):
    """The output folder cannot take more data (disk full, read-only): one line, exit status 1."""

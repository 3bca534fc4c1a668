"""Exceptions that the CLI turns into one line and an exit status instead of a traceback.

Each carries its exit status and its line (`Reported`), so the CLI has one handler for all of them.
"""
from __future__ import annotations


class Reported(BaseException):
    """What the user reads (`line()`) and the exit status (`exit_code`). A BaseException so that `except`
    accepts it; every subclass but Interrupted is also an Exception."""

    exit_code = 1

    def line(self) -> str:
        return f"imaginarynet: error: {self}"


class UserError(Reported, Exception):
    """Bad input from the user: reported in one line, exit status 2."""

    exit_code = 2


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


class WorkerDiedError(Reported, Exception):
    """A worker process or actor failed; reported in one line, exit status 1."""

    def line(self) -> str:
        return f"imaginarynet: error: {self}; finished work is kept, run the same command again to resume"


class ModelLoadError(Reported, Exception):
    """A stage's model failed to load (corrupt weights, a plugin's load() raising): one line naming the
    stage, the model and the cause, exit status 1; IMAGINARYNET_DEBUG=1 shows the traceback."""

    def line(self) -> str:
        return f"imaginarynet: error: {self}; nothing was lost (IMAGINARYNET_DEBUG=1 shows the traceback)"


class StorageError(Reported, Exception):
    """The output folder cannot take more data (disk full, read-only): one line, exit status 1."""

    def line(self) -> str:
        return (f"imaginarynet: error: {self}; finished work is kept: make room and run the same command again "
                "to resume")


class Interrupted(Reported):
    """SIGTERM or SIGINT: finished work is committed, the run stops, exit status 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    def line(self) -> str:
        import signal

        name = signal.Signals(self.signum).name
        return f"interrupted by {name}; finished work is kept: run the same command again to resume"


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first non-empty line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def load_stage(stage, what: str) -> None:
    """stage.load(), with anything but bad input (UserError) turned into ModelLoadError naming `what`."""
    try:
        stage.load()
    except UserError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{what} failed to load: {first_line(exc)}") from exc

"""The one error type the pack raises for bad input.

The math (extractors, mechanisms) raises `InfuseError(problem, fix, input_name=<its parameter>)` and knows no node.
The node base (nodes/base.py) adds the node's display name and maps parameter names to its socket names where they
differ; a contribution does the same for errors found when sampling starts. ComfyUI shows the message as is:
`<node>, input '<socket>': <problem> Fix: <fix>`.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

_NODE: ContextVar[str | None] = ContextVar("infuse_node", default=None)


class InfuseError(ValueError):
    """Bad input, raised before sampling starts."""

    def __init__(self, problem: str, fix: str = "", input_name: str | None = None, node: str | None = None):
        self.problem = problem
        self.fix = fix
        self.input_name = input_name
        self.node = node
        where = ", ".join(filter(None, (node, f"input '{input_name}'" if input_name else None)))
        message = f"{where}: {problem}" if where else problem
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)

    def at_input(self, input_name: str) -> "InfuseError":
        """The same error reported on another input: for shared checks that cannot know which input of the
        calling node fed them (embeds from an encoder or from a file, say)."""
        return InfuseError(self.problem, self.fix, input_name, self.node)

    def at_node(self, node: str, sockets: dict[str, str] | None = None) -> "InfuseError":
        """The error as the user sees it on `node`: parameter names mapped to its socket names. An error that already
        names a node (raised by an inner node call) keeps it."""
        if self.node is not None:
            return self
        input_name = (sockets or {}).get(self.input_name, self.input_name)
        return InfuseError(self.problem, self.fix, input_name, node)


def current_node() -> str | None:
    """The display name of the node whose code is running (see `reported_as`), for labelling what it registers."""
    return _NODE.get()


@contextmanager
def reported_as(node: str, sockets: dict[str, str] | None = None):
    """Run code on behalf of `node`: an InfuseError raised inside names it (parameters mapped to `sockets`), and
    `current_node()` inside returns it."""
    token = _NODE.set(node)
    try:
        yield
    except InfuseError as e:
        raise e.at_node(node, sockets).with_traceback(e.__traceback__) from e.__cause__
    finally:
        _NODE.reset(token)


def check_percent_range(start: float, end: float, prefix: str = "") -> None:
    """A start / end percent pair of the schedule, checked up front so the error names the node's own inputs
    (`adapter_start_percent`, ...) and comes before any slow work."""
    if not 0.0 <= start <= end <= 1.0:
        raise InfuseError(f"{prefix}start_percent {start} / {prefix}end_percent {end} is not a range of the "
                          "schedule.", f"use 0 <= {prefix}start_percent <= {prefix}end_percent <= 1.",
                          input_name=f"{prefix}start_percent")

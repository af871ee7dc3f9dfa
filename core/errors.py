"""The one error type the pack raises for bad input.

ComfyUI shows an exception's message to the user as is, so every message says which node, which input,
and what to do about it.
"""


class InfuseError(ValueError):
    """Bad input to an Infuse node, raised before sampling starts."""

    def __init__(self, node: str, problem: str, fix: str = "", input_name: str | None = None):
        self.node = node
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        where = f"{node}, input '{input_name}'" if input_name else node
        message = f"{where}: {problem}"
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)

    def at_input(self, input_name: str) -> "InfuseError":
        """The same error reported on another input: for shared checks that cannot know which input of the
        calling node fed them (embeds from an encoder or from a file, say)."""
        return InfuseError(self.node, self.problem, self.fix, input_name=input_name)


def check_percent_range(node: str, start: float, end: float, prefix: str = "") -> None:
    """A start / end percent pair of the schedule, checked up front so the error names the node's own inputs
    (`adapter_start_percent`, ...) and comes before any slow work."""
    if not 0.0 <= start <= end <= 1.0:
        raise InfuseError(node, f"{prefix}start_percent {start} / {prefix}end_percent {end} is not a range of the "
                                "schedule.", f"use 0 <= {prefix}start_percent <= {prefix}end_percent <= 1.",
                          input_name=f"{prefix}start_percent")

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

"""The configuration error: raised once, at start, naming the variable to fix."""

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A ``SHOP_*`` setting is missing or invalid; the message names it and what is wrong.

    Fix the named environment variable and start the worker again.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem

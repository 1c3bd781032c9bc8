"""The one error type of user-supplied specs."""

from __future__ import annotations


class SpecError(ValueError):
    """A value in an AgentTask spec (template, inputs) is malformed.

    ``field`` is the dotted path of the offending value (``inputs.weights.a``,
    ``taskTemplate.interface``) so that the operator can put it in a condition message and
    the user knows exactly what to fix.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type["SpecError"], tuple[str, str]]:
        return (type(self), (self.field, self.message))

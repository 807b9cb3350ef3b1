"""PowerShell's error texts for what the shell refuses.

The words follow Windows PowerShell 5.1 (the Exchange Management Shell's host):
- unknown command: "The term 'X' is not recognized as the name of a cmdlet, function, script
  file, or operable program. Check the spelling of the name, or if a path was included, verify
  that the path is correct and try again." (CommandNotFoundException)
- unknown parameter: "A parameter cannot be found that matches parameter name 'X'."
  (ParameterBindingException, NamedParameterNotFound)
- missing value: "Missing an argument for parameter 'X'. Specify a parameter of type ... and try again."
"""

from __future__ import annotations


class ShellError(Exception):
    """An error the shell prints as PowerShell would, then goes on with the next command."""

    def __init__(self, message: str, category: str = "NotSpecified") -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.command: str | None = None  # the cmdlet that raised it ("Get-Queue : ..." in the error)


class ParseError(ShellError):
    """The line cannot be read; `column` is 1-based, as PowerShell's 'At line:1 char:N'."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message, "ParserError")
        self.column = column


def not_recognized(name: str) -> ShellError:
    return ShellError(f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, "
                      "or operable program. Check the spelling of the name, or if a path was included, verify "
                      "that the path is correct and try again.", "ObjectNotFound")


def no_parameter(name: str) -> ShellError:
    return ShellError(f"A parameter cannot be found that matches parameter name '{name}'.", "InvalidArgument")


def missing_argument(name: str) -> ShellError:
    return ShellError(f"Missing an argument for parameter '{name}'. Specify a parameter of the required type "
                      "and try again.", "InvalidArgument")

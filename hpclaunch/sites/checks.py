"""Value checks shared by the profile schema and the renderer.

Every value that can reach a batch script passes one of these first. The rule
is simple: nothing but ``setup`` lines may carry arbitrary shell, no value may
carry a line break or any other control character, and a value that lands in
a shell word must be made of characters the shell treats literally.
"""

from __future__ import annotations

import re

# Characters a shell word may hold without quoting.
SHELL_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
SHELL_WORD_CHARS = "letters, digits and _ @ % + = : , . / -"
# A path: a shell word, optionally starting with ~/ (expanded to $HOME by the template).
PATH = re.compile(r"(?:~/)?[A-Za-z0-9_@%+=:,./-]+|~")
# A scheduler directive value (never seen by the shell): no spaces or quotes.
DIRECTIVE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./&|\[\]*()!-]+")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
HOST = re.compile(r"[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]+\]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u0085\u2028\u2029]")
_CONTROL_OR_TAB = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def control_char(text: str, *, allow_tab: bool = False) -> str | None:
    """The first control character in ``text`` (as ``\\xNN``), or None.

    U+0085, U+2028 and U+2029 count too: some tools treat them as line breaks.
    """
    match = (_CONTROL if allow_tab else _CONTROL_OR_TAB).search(text)
    if match is None:
        return None
    return (
        f"\\x{ord(match.group()):02x}"
        if ord(match.group()) < 256
        else f"\\u{ord(match.group()):04x}"
    )


def show(value: object, limit: int = 60) -> str:
    """A short, single-line rendering of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

r"""What the user typed after `/delegate-parallel`, back to the argument list they meant.

The command file hands `$ARGUMENTS` to `delegate-parallel prepare` inside a quoted heredoc, so
bash expands nothing in it and the text arrives byte for byte, except for one change Claude
Code makes to every argument it pastes into a shell block: it defuses `!` (`` `! `` becomes
`` ` ! ``, `` !` `` becomes `` ! ` ``, and a `!` after a blank or at a line start gets a
backslash). `undo_bang_escapes` reverses exactly that, in the reverse order.

The text is then split into words as bash splits them (quotes group, a backslash escapes, in
double quotes only before $ ` " \ and a newline) but with no expansion of any kind: `$HOME`,
`$(...)` and backticks stay text.
"""

from __future__ import annotations

import os
import re

from awoc_scripts.errors import InputError

_ESCAPED_BANG = re.compile(r"(^|\s)\\!", re.MULTILINE)


def undo_bang_escapes(text: str) -> str:
    text = _ESCAPED_BANG.sub(lambda m: m.group(1) + "!", text)
    return text.replace("! `", "!`").replace("` !", "`!")


def split_command_arguments(text: str) -> list[str]:
    """The argument list of `/delegate-parallel TEXT`."""
    text = undo_bang_escapes(text.removesuffix("\n"))
    whole = text.strip()
    if whole and "\n" not in whole and os.path.isfile(whole):
        return [whole]  # a config path with spaces, typed without quotes
    return split_words(text)


_ESCAPABLE_IN_DOUBLE_QUOTES = '$`"\\\n'


def split_words(text: str) -> list[str]:
    """Words as bash splits them (quotes group, backslashes escape), with no expansion at all."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in " \t\n":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        if char == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                i += 2  # a backslash before a newline joins the lines
                continue
            in_word = True
            word.append(text[i + 1] if i + 1 < n else char)  # a final backslash stays itself
            i += 2
            continue
        in_word = True
        if char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise _unclosed("'")
            word.append(text[i + 1 : end])
            i = end + 1
        elif char == '"':
            i += 1
            while True:
                if i >= n:
                    raise _unclosed('"')
                char = text[i]
                if char == '"':
                    i += 1
                    break
                if char == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE_IN_DOUBLE_QUOTES:
                    if text[i + 1] != "\n":
                        word.append(text[i + 1])
                    i += 2
                else:
                    word.append(char)
                    i += 1
        else:
            word.append(char)
            i += 1
    if in_word:
        words.append("".join(word))
    return words


def _unclosed(quote: str) -> InputError:
    return InputError(
        f"could not read the arguments: a {quote} was opened and never closed. Put each task in double "
        'quotes, e.g. "docs-fetcher:Don\'t panic", or write the tasks in a config file and pass its path'
    )

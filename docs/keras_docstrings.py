"""A griffe extension that reads Keras-style docstrings for the API reference.

Keras writes `Example:` followed by a blank line and unindented `>>>` lines,
and `Call arguments:` as `name: description` items. The Google-style parser
takes neither: the example becomes a quotation and the call arguments one run
of text. This extension rewrites the docstring before it is parsed, so the
docstrings stay in Keras's style: the example lines are indented under an
`Examples:` section (rendered as code) and the items of the free-form
sections (`Call arguments:`, `Input shape:`, ...) become a Markdown list.
Loaded by mkdocs.yml (`extensions:` of the python handler).
"""

import re

import griffe

SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
# Sections the Google-style parser knows: left as they are.
KNOWN = {"Args", "Arguments", "Returns", "Raises", "Yields", "Attributes", "Note", "Warning"}
ITEM = re.compile(r"^    (\*{0,2}\w+): (.*)$")


def rewrite(text):
    """`text` (a cleaned docstring) with its Keras-style sections made parseable."""
    lines = text.splitlines()
    out = []
    section = None
    for line in lines:
        title = SECTION.match(line)
        if title:
            section = title.group(1)
            out.append("Examples:" if section in ("Example", "Examples") else line)
            continue
        if section in ("Example", "Examples"):
            out.append("    " + line if line else line)  # the whole example, under its title
        elif section is not None and section not in KNOWN and ITEM.match(line):
            name, description = ITEM.match(line).groups()
            out.append(f"    - `{name}`: {description}")
        else:
            out.append(line)
    return "\n".join(out)


class KerasDocstrings(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)

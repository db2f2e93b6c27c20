"""CSV that staff open in Excel: text that a spreadsheet would run as a formula stays text.

Excel and LibreOffice read a cell beginning with ``=``, ``+``, ``-`` or ``@`` as a formula (a
tab or carriage return before them is skipped), so a name registered as
``=HYPERLINK("http://…","…")`` would run when a clerk opens the mail-merge list, and a value in
an uploaded file would run when its error report is opened ("CSV injection"). Every text cell
beginning so is written with an apostrophe in front, as OWASP advises; the spreadsheet then
shows the text, with the apostrophe. Numbers the code writes (ints) are left alone. Rows end in
CRLF, as Excel writes them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

#: What a spreadsheet takes as the start of a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """``value`` as a spreadsheet will show it as text."""
    return "'" + value if value.startswith(FORMULA_START) else value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The rows under the header as CSV text; text cells made safe with ``text_cell``."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(
        [text_cell(value) if isinstance(value, str) else value for value in row] for row in rows
    )
    return text.getvalue()

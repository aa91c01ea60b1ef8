"""CSV as the service writes it: every file a spreadsheet may open goes through `csv_text`.

A text cell that begins with =, +, -, @, a tab or a carriage return is a formula to a spreadsheet,
and FathomNet's text (a concept name, say) comes from outside: such cells get a leading ' (OWASP's
advice), so they show as text. Numbers stay numbers: a coordinate of -12 is not touched.
"""

import csv
import io

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """A cell's value as a spreadsheet should read it: text that would start a formula is made text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header, rows):
    """The CSV of a header and rows (sequences of cells), every text cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([safe_cell(name) for name in header])
    for row in rows:
        writer.writerow([safe_cell("" if value is None else value) for value in row])
    return out.getvalue()

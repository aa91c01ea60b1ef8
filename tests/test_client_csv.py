"""The client's crops.csv is written by the service's rules (cropper/spreadsheets.py), cell for cell."""

from hypothesis import given
from hypothesis import strategies as st

from cropper.spreadsheets import csv_text
from cropper_client.cli import csv_row

cells = (st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.none()
         | st.text(max_size=12) | st.sampled_from(["=1", "+1", "-1", "@a", "\t=1", "\r=1", "a\r=1", 'a"b', "a,b"]))


@given(st.lists(cells, min_size=1, max_size=9))
def test_a_row_is_written_as_the_service_writes_it(row):
    assert csv_row(row) == csv_text(row, [])


def test_a_formula_concept_is_text_and_a_coordinate_a_number():
    assert csv_row(["u", '=HYPERLINK("x")', -12]) == 'u,"\'=HYPERLINK(""x"")",-12\n'

"""number_setting: one rule for numeric settings from the environment, naming what is refused."""

import pytest

from proto.common.settings import number_setting


class CustomError(ValueError):
    pass


def test_unset_or_empty_is_the_default_and_spaces_are_ignored():
    assert number_setting({}, "AIOS_X", 7.5, low=0, high=10) == 7.5
    assert number_setting({"AIOS_X": "  "}, "AIOS_X", None, low=0, high=10) is None
    assert number_setting({"AIOS_X": " 2.5 "}, "AIOS_X", 7.5, low=0, high=10) == 2.5
    assert number_setting({"AIOS_X": "10"}, "AIOS_X", 1, low=0, high=10, whole=True) == 10


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    ("ten", {"unit": "seconds"}, "AIOS_X='ten': not a number of seconds"),
    ("1.5", {"whole": True, "unit": "bytes"}, "AIOS_X='1.5': not a whole number of bytes"),
    ("0", {"low_exclusive": True, "unit": "seconds"}, "AIOS_X='0': must be > 0 and <= 10 seconds"),
    ("11", {}, "AIOS_X='11': must be between 0 and 10"),
    ("-1", {}, "AIOS_X='-1': must be between 0 and 10"),
    ("nan", {}, "AIOS_X='nan': must be between 0 and 10"),
    ("inf", {}, "AIOS_X='inf': must be between 0 and 10"),
])
def test_refusals_name_the_setting_and_its_value(value, kwargs, message):
    with pytest.raises(ValueError) as caught:
        number_setting({"AIOS_X": value}, "AIOS_X", 1.0, low=0, high=10, **kwargs)
    assert str(caught.value) == message


def test_the_callers_error_type_is_raised():
    with pytest.raises(CustomError, match="AIOS_X='x'"):
        number_setting({"AIOS_X": "x"}, "AIOS_X", 1, low=0, high=10, error=CustomError)

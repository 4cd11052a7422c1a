"""operator_token: the token the aggregator's command-line clients send (onboard, addons)."""

import io

from aggregator.auth import operator_token


def test_the_flag_wins_over_the_environment():
    assert operator_token("from-flag", io.StringIO(), env={"AIOS_TOKEN": "from-env"}) == "from-flag"


def test_the_first_write_token_of_the_environment(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\nsecond\n")
    assert operator_token(None, io.StringIO(), env={"AIOS_TOKEN_FILE": str(token_file)}) == "first"
    assert operator_token(None, io.StringIO(), env={}) is None


def test_an_unreadable_token_file_is_a_warning_naming_it(tmp_path):
    warn = io.StringIO()
    missing = tmp_path / "nope"
    assert operator_token(None, warn, env={"AIOS_TOKEN_FILE": str(missing)}) is None
    assert warn.getvalue().startswith("warning: ") and str(missing) in warn.getvalue()

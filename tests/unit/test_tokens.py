"""The one token rule (proto/common/tokens.py) and what each side builds on it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agent.stream.credentials import AgentCredentials, credentials_from_env
from aggregator.auth import AccessTokens, AuthError, Role, ensure_token_file, load_access_tokens
from proto.common.tokens import TokenFileError, tokens_from_env


def test_the_value_comes_first_then_the_files_lines(tmp_path):
    path = tmp_path / "token"
    path.write_text("\n new-one \n\nold-one\n")
    assert tokens_from_env({"AIOS_TOKEN": " direct ", "AIOS_TOKEN_FILE": str(path)}) == ("direct", "new-one", "old-one")
    assert tokens_from_env({"AIOS_TOKEN": "  ", "AIOS_TOKEN_FILE": ""}) == ()  # blank is unset


def test_an_unreadable_file_names_the_variable_and_the_path(tmp_path):
    with pytest.raises(TokenFileError, match=r"AIOS_READ_TOKEN_FILE=.*/missing: cannot read"):
        tokens_from_env({"AIOS_READ_TOKEN_FILE": str(tmp_path / "missing")},
                        value_var="AIOS_READ_TOKEN", file_var="AIOS_READ_TOKEN_FILE")


def test_access_tokens_tell_write_from_read(tmp_path):
    (tmp_path / "read").write_text("r1\nr2\n")
    tokens = load_access_tokens({"AIOS_TOKEN": "w", "AIOS_READ_TOKEN_FILE": str(tmp_path / "read")})
    assert [tokens.role_of(t) for t in ("w", "r1", "r2", "x", None)] == [Role.WRITE, Role.READ, Role.READ, None, None]
    assert AccessTokens(write=("same",), read=("same",)).role_of("same") is Role.WRITE
    assert "r1" not in repr(tokens) and "w" not in repr(tokens).replace("write", "")


def test_ensure_token_file_creates_once_and_both_sides_agree(tmp_path):
    path = tmp_path / "auth" / "token"
    results, barrier = [], threading.Barrier(8)

    def create():
        barrier.wait()
        results.append(ensure_token_file(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results[0]) >= 32
    assert path.read_text().strip() == results[0]
    assert path.stat().st_mode & 0o777 == 0o440
    assert path.parent.stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in path.parent.iterdir()) == ["token"]  # no staged leftovers
    path.chmod(0o640)
    path.write_text("\n")
    with pytest.raises(AuthError, match="empty"):
        ensure_token_file(path)


def test_the_agent_prefers_its_projected_token_and_reads_it_at_each_call(tmp_path):
    projected = tmp_path / "projected"
    assert credentials_from_env({"AIOS_TOKEN": "shared"}, default_sa_file=projected).current() == "shared"
    projected.write_text("sa-1\n")
    credentials = credentials_from_env({"AIOS_TOKEN": "shared"}, default_sa_file=projected)
    assert credentials.current() == "sa-1" and "ServiceAccount" in credentials.kind
    staged = tmp_path / "staged"
    staged.write_text("sa-2\n")
    os.replace(staged, projected)  # as the kubelet rotates it
    assert credentials.current() == "sa-2"
    named = credentials_from_env({"AIOS_SA_TOKEN_FILE": str(tmp_path / "elsewhere")}, default_sa_file=projected)
    assert named.sa_token_file == tmp_path / "elsewhere"
    with pytest.raises(TokenFileError, match="AIOS_SA_TOKEN_FILE"):
        named.current()
    assert AgentCredentials(sa_token_file=None, env={}).current() is None
    assert Path(credentials.sa_token_file) == projected

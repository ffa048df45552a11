"""The keys file and the safe-bind rule."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from moorage.auth import BindRefused, KeyFileError, build_verifier, check_bind, is_loopback, load_keyring
from moorage.config import Settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "credentials"
    path.write_text(text)
    return path


def test_load_keyring(tmp_path: Path) -> None:
    ring = load_keyring(
        write(
            tmp_path,
            "[alice]\naws_access_key_id = AKIDALICE\naws_secret_access_key = s3cr%t/+=\n"
            "aws_account_id = 111122223333\n\n"
            "[bob]\naws_access_key_id=AKIDBOB\naws_secret_access_key=bob\naccount=444455556666\n\n"
            "[carol]\naws_access_key_id=AKIDCAROL\naws_secret_access_key=carol ; a comment\n",
        ),
        default_account="999999999999",
    )
    assert sorted(ring) == ["AKIDALICE", "AKIDBOB", "AKIDCAROL"]
    assert ring["AKIDALICE"].secret == "s3cr%t/+="
    assert ring["AKIDALICE"].name == "alice"
    assert [ring[k].account for k in sorted(ring)] == ["111122223333", "444455556666", "999999999999"]
    assert ring["AKIDCAROL"].secret == "carol"
    assert "s3cr" not in repr(ring)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[a]\naws_secret_access_key = s\n", "has no aws_access_key_id"),
        ("[a]\naws_access_key_id = AK\n", "has no aws_secret_access_key"),
        ("[a]\naws_access_key_id = AK\naws_secret_access_key = s\naws_account_id = 1234\n", "12 digits"),
        ("", "defines no keys"),
        ("not ini at all", "cannot read"),
        (
            "[a]\naws_access_key_id=AK\naws_secret_access_key=s\n[b]\naws_access_key_id=AK\naws_secret_access_key=t\n",
            "appears in both",
        ),
    ],
)
def test_bad_keys_files(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(KeyFileError, match=says):
        load_keyring(write(tmp_path, text))


def test_missing_keys_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_keyring(tmp_path / "nope")


def test_build_verifier(tmp_path: Path) -> None:
    assert build_verifier(Settings(state_dir=tmp_path)) is None
    path = write(tmp_path, "[a]\naws_access_key_id=AK\naws_secret_access_key=s\n")
    assert build_verifier(Settings(state_dir=tmp_path, credentials_file=path)) is not None


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert check_bind(host, None, insecure=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "example.com", "192.168.1.1"])
def test_other_hosts_need_credentials(host: str, tmp_path: Path) -> None:
    assert not is_loopback(host)
    with pytest.raises(BindRefused, match="--credentials"):
        check_bind(host, None, insecure=False)
    assert check_bind(host, tmp_path / "keys", insecure=False) is None
    warning = check_bind(host, None, insecure=True)
    assert warning is not None and "WITHOUT signature verification" in warning


def test_serve_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moorage.cli import main

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the server started")

    # the refusal comes before the app runs (or is even imported for real)
    monkeypatch.setitem(sys.modules, "moorage.app", types.SimpleNamespace(serve=never))

    assert main(["serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path)]) == 2
    assert "Refusing to listen on 0.0.0.0" in capsys.readouterr().err
    assert main(["serve", "--credentials", str(tmp_path / "missing"), "--state-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_keys_of_several_accounts_are_refused_for_one_server(tmp_path: Path) -> None:
    from moorage.auth.keys import KeyFileError, load_keyring, the_account

    path = tmp_path / "keys"
    path.write_text(
        "[a]\naws_access_key_id=AKA\naws_secret_access_key=a\naws_account_id=111122223333\n\n"
        "[b]\naws_access_key_id=AKB\naws_secret_access_key=b\naws_account_id=444455556666\n"
    )
    with pytest.raises(KeyFileError, match="several accounts"):
        the_account(load_keyring(path), path)
    path.write_text("[a]\naws_access_key_id=AKA\naws_secret_access_key=a\naws_account_id=111122223333\n")
    assert the_account(load_keyring(path), path) == "111122223333"

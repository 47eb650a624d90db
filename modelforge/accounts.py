"""Who uses the app: accounts in a users file under the data folder, and what each account may see and control.

Passwords are stored as salted scrypt hashes (hashlib), never as text. With no users file (and no other sign-in), the
app is one person's: everything is visible and controllable by the one local account.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from modelforge.errors import ModelForgeError

USERS_FILE = "users.json"
NAME_RULE = "1-64 letters, digits, '.', '_' or '-'"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_PASSWORD = 8
# scrypt at 16 MiB of memory per check: ~50 ms here, which makes guessing a stolen file's passwords slow.
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class AccountError(ModelForgeError):
    """An account cannot be created, found or used as asked."""


@dataclass(frozen=True)
class Account:
    """The signed-in user: `name` None is the local, single-user app (no sign-in), which is an admin."""

    name: str | None
    admin: bool = False

    def may_control(self, owner: str | None) -> bool:
        """Own rows are the user's; an admin's are all rows, the ones created before accounts existed (owner None)
        included."""
        return self.admin or (owner is not None and owner == self.name)


LOCAL = Account(name=None, admin=True)
NOBODY = Account(name=None)  # what a page is built with before any user is known: no one's rows


def users_path(home: Path) -> Path:
    return home / USERS_FILE


def _read(home: Path) -> dict[str, dict]:
    path = users_path(home)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))["users"]
    except (ValueError, KeyError) as exc:
        raise AccountError(f"{path} is not a ModelForge users file ({exc}): fix or remove it.") from None


def _write(home: Path, users: dict[str, dict]) -> None:
    path = users_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # Written whole and renamed, readable by the server's own user only: the hashes are still worth guarding.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump({"users": users}, file, indent=2)
    os.replace(temporary, path)


def _hash(password: str, salt: bytes) -> str:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT).hex()


def has_users(home: Path) -> bool:
    return bool(_read(home))


def list_users(home: Path) -> list[Account]:
    return [Account(name, entry["admin"]) for name, entry in sorted(_read(home).items())]


def add_user(home: Path, name: str, password: str, admin: bool = False) -> Account:
    if not _NAME.fullmatch(name or ""):
        raise AccountError(f"{name!r} is not a valid user name: use {NAME_RULE}.")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"The password of {name} is too short: use at least {MIN_PASSWORD} characters.")
    users = _read(home)
    if name in users:
        raise AccountError(f"A user named {name} exists already: remove it first to set a new password.")
    salt = secrets.token_bytes(16)
    users[name] = {"salt": salt.hex(), "scrypt": _hash(password, salt), "admin": admin, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write(home, users)
    return Account(name, admin)


def remove_user(home: Path, name: str) -> None:
    users = _read(home)
    if name not in users:
        raise AccountError(f"No user named {name}: `python -m modelforge user list` shows them.")
    del users[name]
    _write(home, users)


def check_password(home: Path, name: str, password: str) -> Account | None:
    """The account when `password` is right, else None (an unknown name costs the same time as a wrong password)."""
    entry = _read(home).get(name)
    salt = bytes.fromhex(entry["salt"]) if entry else b"\0" * 16
    matches = hmac.compare_digest(_hash(password, salt), entry["scrypt"] if entry else "")
    return Account(name, entry["admin"]) if entry and matches else None


@dataclass(frozen=True)
class SignIn:
    """How this server's users sign in: the users file, the `--auth user:password` pair (an admin account kept in
    memory only), or Hugging Face OAuth on a Space (whose owner, `oauth_admins`, is an admin)."""

    home: Path
    shared: tuple[str, str] | None = None
    oauth: bool = False
    oauth_admins: frozenset[str] = frozenset()

    def check(self, name: str, password: str) -> bool:
        """Gradio's login check."""
        if self.shared is not None and hmac.compare_digest(f"{name}:{password}", ":".join(self.shared)):
            return True
        return check_password(self.home, name, password) is not None

    def account(self, name: str) -> Account:
        """The account of a name that signed in (by password or OAuth)."""
        if self.shared is not None and name == self.shared[0]:
            return Account(name, admin=True)
        entry = _read(self.home).get(name)
        return Account(name, admin=name in self.oauth_admins or bool(entry and entry["admin"]))


def sign_in_for(home: Path, shared: str | None = None) -> SignIn | None:
    """How this server signs users in, from its setting: Hugging Face OAuth on a Space whose README says
    `hf_oauth: true` (the Space then sets OAUTH_CLIENT_ID), else the users file and the `--auth` / MODELFORGE_AUTH
    pair; None when there is neither: one local user, no sign-in."""
    pair = None
    if shared:
        name, sep, password = shared.partition(":")
        if not sep or not name or not password:
            raise AccountError("--auth / MODELFORGE_AUTH must look like user:password")
        pair = (name, password)
    if os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"):
        owner = os.environ.get("SPACE_AUTHOR_NAME")
        return SignIn(home, pair, oauth=True, oauth_admins=frozenset([owner] if owner else []))
    if pair is None and not has_users(home):
        return None
    return SignIn(home, pair)

"""Who each resource is: its Unix user and group, and its broker identity (checked at load).

``user`` and ``group`` (per resource, defaults in ``[defaults]``) name the Unix account
a resource's process drops to after the fork (``sghost.process.privileges``). This module
checks, for every enabled resource, what must hold for that to work and to mean something:

- sghost runs as root (only root can change its user), and the user and group exist;
- the key the resource connects with is readable by that user and by nobody else
  (other resources run as other users); a resource with a ``user`` therefore needs a
  ``certificate_directory`` of its own under TLS, since the host's key is root's;
- under TLS, a resource without its own ``certificate_directory`` connects as the host,
  with the host's rights: a warning, or an error with ``[broker] require_resource_identity``.

:func:`review` returns :class:`Finding` lines; ``manifest.load_manifest`` records them
as problems or warnings, so ``sghost check``, ``start`` and reload all see them.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgframework import constants


@dataclass(frozen=True)
class Finding:
    """A problem (``error``) or a warning about one key of the manifest."""

    keypath: str
    message: str
    error: bool = True


@dataclass(frozen=True)
class Account:
    """A resolved Unix user and group."""

    user: str
    uid: int
    gid: int
    group: str | None = None


def resolve(user: str, group: str | None = None) -> Account:
    """Look up ``user`` (and ``group``, else the user's primary group); KeyError names what is missing."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise KeyError(f"no user {user!r} on this machine") from None
    if group is None:
        return Account(user, entry.pw_uid, entry.pw_gid)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise KeyError(f"no group {group!r} on this machine") from None
    return Account(user, entry.pw_uid, gid, group)


def _quote(value: str) -> str:
    return '"' + value.replace('"', '\\"') + '"'


def review(
    host_name: str,
    broker: Any,
    resources: dict[str, Any],
    key: Callable[..., str],
    own_keys: Callable[[str], set[str]],
) -> list[Finding]:
    """Findings for every enabled resource of a parsed manifest.

    ``broker`` is the ``BrokerConfig``, ``resources`` the ``ResourceConfig`` by name;
    ``key(*parts)`` spells a TOML key path; ``own_keys(name)`` the keys set in the
    resource's own table (``user`` and ``group`` not among them came from ``[defaults]``).
    """
    findings: list[Finding] = []
    for name, resource in resources.items():
        if not resource.enabled:
            continue
        prefix = key("resources", name)
        findings += _identity_findings(prefix, host_name, broker, resource)
        if resource.user is not None or resource.group is not None:
            own = own_keys(name)
            keypaths = {
                field: f"{prefix}.{field}" if field in own else f"defaults.{field}" for field in ("user", "group")
            }
            findings += _account_findings(prefix, broker, resource, keypaths)
    return findings


def _identity_findings(prefix: str, host_name: str, broker: Any, resource: Any) -> list[Finding]:
    if broker.certificate_directory is None or resource.certificate_directory is not None:
        return []
    rights = (
        f"the rights of the host {_quote(host_name)}: it publishes as {_quote(host_name)} (so the broker drops its "
        f"data/{resource.name}/... under the documented ACL) and may read command/{host_name}/# (remote control)"
    )
    if broker.require_resource_identity:
        return [Finding(
            f"{prefix}.certificate_directory",
            f"missing with [broker] require_resource_identity = true; expected a certificate_directory of its own "
            f"(sghost certs issue {resource.name}): without it, it would connect with [broker] "
            f"certificate_directory ({broker.certificate_directory}) and {rights}",
        )]
    return [Finding(
        f"{prefix}.certificate_directory",
        f"not set: {resource.name} connects with [broker] certificate_directory ({broker.certificate_directory}) "
        f"and so with {rights}; give it its own (sghost certs issue {resource.name}), or set [broker] "
        "require_resource_identity = true to refuse this",
        error=False,
    )]


def _account_findings(prefix: str, broker: Any, resource: Any, keypaths: dict[str, str]) -> list[Finding]:
    user_keypath = keypaths["user"]
    if resource.user is None:
        return [Finding(keypaths["group"], "set without user; expected user as well (group is the user's group)")]
    if os.geteuid() != 0:
        me = _user_name(os.geteuid())
        return [Finding(
            user_keypath,
            f"{_quote(resource.user)} needs sghost to run as root to switch users, but it runs as {me} "
            f"(uid {os.geteuid()}); expected sghost started as root (e.g. by systemd), or no user",
        )]
    try:
        account = resolve(resource.user, resource.group)
    except KeyError as error:
        keypath = user_keypath if "no user" in str(error) else keypaths["group"]
        return [Finding(keypath, f"{error.args[0]}; expected an existing account (useradd --system NAME)")]
    directory = resource.certificate_directory or broker.certificate_directory
    if directory is None:
        return []
    keypath = f"{prefix}.certificate_directory" if resource.certificate_directory else "broker.certificate_directory"
    return _key_findings(keypath, Path(directory), account)


def _user_name(uid: int) -> str:
    try:
        return _quote(pwd.getpwuid(uid).pw_name)
    except KeyError:
        return f"uid {uid}"


def _key_findings(keypath: str, directory: Path, account: Account) -> list[Finding]:
    """The key must be readable by ``account`` and by no other user but root."""
    key = directory / constants.KEYFILE
    try:
        status = key.stat()
        directory_status = directory.stat()
    except OSError:
        return []  # a missing file is reported by the certificate_directory check
    fix = f"expected the key owned by {account.user} and mode 0600: sghost certs issue NAME --owner {account.user}"
    if status.st_uid != account.uid:
        owner = _user_name(status.st_uid)
        return [Finding(keypath, f"{key} is owned by {owner}, so {account.user} cannot read it or others can; {fix}")]
    if stat.S_IMODE(status.st_mode) & 0o077:
        return [Finding(keypath, f"{key} has mode {stat.S_IMODE(status.st_mode):04o}: other users can read it; {fix}")]
    if directory_status.st_uid != account.uid and not directory_status.st_mode & 0o001:
        return [Finding(keypath, f"{account.user} cannot enter {directory} (owned by "
                        f"{_user_name(directory_status.st_uid)}, mode {stat.S_IMODE(directory_status.st_mode):04o}); "
                        f"expected it owned by {account.user}: chown {account.user} {directory}")]
    return []

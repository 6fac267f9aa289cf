"""Can this process write what the daemon writes? Checked by configtest (the unit's
ExecStartPre runs it as the daemon's user), at start, and by pyspamc before it opens the
store, so a wrong owner is one line naming the path, not a traceback or a silent Bayes off.

Checked: the SQLite store, its -wal/-shm files and its directory (the state directory, where
SQLite makes and removes those files; the store is made on first learn), and the directory of
each unix: milter socket. Redis is a server of its own: nothing to check on disk.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from pyspamd.config import Config


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _owner(path: Path) -> str:
    st = path.stat()
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return f"owner {name}, mode {stat.S_IMODE(st.st_mode):04o}"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def sqlite_store_path(config: Config) -> Path | None:
    if config.storage.backend != "sqlite":
        return None
    from pyspamd.storage import default_sqlite_path

    return Path(config.storage.path) if config.storage.path else default_sqlite_path()


def _not_writable(path: Path, what: str, user: str) -> str:
    return (f"{what} {path}: not writable by user {user} ({_owner(path)}); "
            f"run pyspamd as its owner, or: chown {user} {path}")


def _daemon_user(directory: Path) -> pwd.struct_passwd | None:
    """Run as root (an admin's configtest) over a state directory that belongs to another
    user (the package's pyspamd): that user is the one the daemon runs as."""
    if os.geteuid() != 0 or not directory.is_dir():
        return None
    uid = directory.stat().st_uid
    try:
        return pwd.getpwuid(uid) if uid != 0 else None
    except KeyError:
        return None


def _can_write_as(path: Path, user: pwd.struct_passwd) -> bool:
    """The mode bits as the kernel reads them for `user` (os.access answers for root)."""
    import grp

    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IWUSR)
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def store_problems(config: Config, as_owner: bool = False) -> list[str]:
    """The store's file and directory, as the current user sees them. as_owner (configtest):
    as the state directory's owner when root checks another user's directory, which is the
    user the daemon will run as."""
    path = sqlite_store_path(config)
    if path is None:
        return []
    user = _user()
    problems = []
    directory = path.parent
    owner = _daemon_user(directory) if as_owner else None
    if owner is not None:
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if candidate.exists() and not _can_write_as(candidate, owner):
                problems.append(_not_writable(candidate, "storage.path", owner.pw_name))
        return problems
    if path.exists():
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if candidate.exists() and not os.access(candidate, os.R_OK | os.W_OK):
                problems.append(_not_writable(candidate, "storage.path", user))
        if directory.exists() and not os.access(directory, os.W_OK | os.X_OK):
            problems.append(_not_writable(directory, "state directory", user))
    else:
        existing = _nearest_existing(directory)
        if not existing.is_dir():
            problems.append(f"state directory {directory}: {existing} is not a directory")
        elif not os.access(existing, os.W_OK | os.X_OK):
            problems.append(_not_writable(existing, "state directory", user))
    return problems


def socket_problems(config: Config) -> list[str]:
    user = _user()
    problems = []
    specs = [("milter.listen", spec) for spec in config.milter.listen]
    specs += [("policy_service.listen", spec) for spec in config.policy_service.listen]
    for option, spec in specs:
        kind, _, rest = spec.partition(":")
        if kind not in ("unix", "local"):
            continue
        directory = Path(rest).parent
        if not directory.is_dir():
            problems.append(f"{option} {spec}: directory {directory} does not exist; "
                            f"make it, owned by {user}")
        elif not os.access(directory, os.W_OK | os.X_OK):
            problems.append(_not_writable(directory, f"{option} {spec}: directory", user))
    return problems


def write_problems(config: Config, as_owner: bool = False) -> list[str]:
    """Everything the daemon writes; one line per problem."""
    return store_problems(config, as_owner) + socket_problems(config)


def give_store_back(config: Config) -> None:
    """After a pyspamc run as root: the SQLite files it made or touched in a state directory
    that belongs to another user (the package's pyspamd) go to that user, so the daemon can
    still write them. Root may read users' Maildirs to learn from them; the store must stay
    the daemon's."""
    path = sqlite_store_path(config)
    if path is not None:
        give_back(path.parent, [path, Path(f"{path}-wal"), Path(f"{path}-shm")])


def give_back(directory: Path, paths: list[Path]) -> None:
    """Run as root: those of `paths` root made or owns go to the owner of `directory`
    (the daemon's user), when it is another user."""
    if os.geteuid() != 0 or not directory.is_dir():
        return
    owner = directory.stat()
    if owner.st_uid == 0:
        return
    for candidate in paths:
        try:
            if candidate.stat().st_uid == 0:
                os.chown(candidate, owner.st_uid, owner.st_gid)
        except FileNotFoundError:
            continue

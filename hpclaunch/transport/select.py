"""Which SSH client serves a host: paramiko or the system OpenSSH.

An unexpired ``hpclaunch connect`` session wins (it is what spares the user
a login; if its master dropped, OpenSSH logs in again once and re-opens it).
Otherwise ``ssh.transport`` decides; ``auto`` takes OpenSSH when the user's
ssh config asks for what only OpenSSH does (ControlMaster) or when paramiko
cannot read the config (``Include``, ``Match``, a parse error).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hpclaunch.errors import UserError
from hpclaunch.transport.options import SSHOptions, config_file_for

log = logging.getLogger(__name__)
_OPENSSH_ONLY = re.compile(r"^\s*(Include|Match)\b", re.IGNORECASE | re.MULTILINE)


def choose(host: str, options: SSHOptions) -> str:
    """``"openssh"`` or ``"paramiko"`` for ``host``."""
    from hpclaunch.transport import sessions
    from hpclaunch.transport.openssh import OpenSSHTransport, ssh_binary

    if options.transport == "openssh":
        return "openssh"
    if ssh_binary() is not None and sessions.any_records():
        try:
            if OpenSSHTransport(host, options).in_session():
                return "openssh"
        except (UserError, OSError) as exc:  # the chosen transport will say it properly
            log.debug("no session check for %s: %s", host, exc)
    if (
        options.transport == "auto"
        and ssh_binary() is not None
        and _config_needs_openssh(host, options)
    ):
        return "openssh"
    return "paramiko"


def _config_needs_openssh(host: str, options: SSHOptions) -> bool:
    chosen = config_file_for(options)
    if chosen and chosen.lower() == "none":
        return False
    path = Path(chosen or "~/.ssh/config").expanduser()
    try:
        text = path.read_text()
    except OSError:
        return False
    if _OPENSSH_ONLY.search(text):
        return True
    import paramiko

    from hpclaunch.transport.sshconfig import parse_host_spec

    try:
        entry = paramiko.SSHConfig.from_text(text).lookup(parse_host_spec(host)[1])
    except Exception:  # noqa: BLE001 - paramiko cannot read it: OpenSSH can
        return True
    return str(entry.get("controlmaster", "no")).lower() not in ("no", "")

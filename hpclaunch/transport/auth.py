"""SSH authentication: agent keys, identity files (asking for passphrases),
and keyboard-interactive prompts (MFA, one-time codes) asked on the terminal.

Secrets typed by the user are passed to paramiko and never logged or kept.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from pathlib import Path

import paramiko

from hpclaunch.transport.base import AuthenticationError, NoTerminalError
from hpclaunch.transport.hostkeys import fingerprint
from hpclaunch.transport.sshconfig import Endpoint

#: ``prompter(text, echo) -> answer``; raises NoTerminalError when it cannot ask.
Prompter = Callable[[str, bool], str]
PASSPHRASE_TRIES = 3


def terminal_available() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def terminal_prompter(text: str, echo: bool) -> str:
    """Ask on the controlling terminal (never stdin, which may carry data)."""
    if not terminal_available():
        raise NoTerminalError(f"no terminal to ask {text.strip()!r} on")
    if not echo:
        return getpass.getpass(text)
    with open("/dev/tty", "r+") as tty:
        tty.write(text)
        tty.flush()
        return tty.readline().rstrip("\n")


class Authenticator:
    """Tries, in order, agent keys, identity files and keyboard-interactive."""

    def __init__(self, *, allow_agent: bool = True, prompter: Prompter = terminal_prompter):
        self.allow_agent = allow_agent
        self.prompter = prompter
        self._keys: dict[Path, paramiko.PKey] = {}  # loaded (decrypted) keys, per transport object

    def authenticate(self, transport: paramiko.Transport, endpoint: Endpoint) -> None:
        notes: list[str] = []
        offered: list[str] = []
        allowed: list[str] | None = None
        for label, key in self._candidate_keys(endpoint, notes):
            if allowed is not None and "publickey" not in allowed:
                break
            offered.append(label)
            try:
                remaining = transport.auth_publickey(endpoint.user, key)
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                break
            except paramiko.AuthenticationException:
                continue
            except paramiko.SSHException as exc:
                raise AuthenticationError(
                    f"{endpoint.describe()}: authentication failed: {exc}"
                ) from exc
            if transport.is_authenticated():
                return
            allowed = list(remaining or [])  # partial success: e.g. key then one-time code
            notes.append(f"{label} accepted, the server wants more ({', '.join(allowed)})")
            break
        wants_kbd = allowed is None or "keyboard-interactive" in allowed
        if wants_kbd and self._keyboard_interactive(
            transport, endpoint, notes, required=allowed is not None
        ):
            return
        what = f"offered {', '.join(offered)}" if offered else "no key to offer"
        detail = "; ".join(notes)
        raise AuthenticationError(
            f"{endpoint.describe()} refused authentication ({what}"
            + (f"; {detail}" if detail else "")
            + "); check User and IdentityFile (ssh config or the site's ssh options) and "
            "that the public key is in ~/.ssh/authorized_keys there"
        )

    # ------------------------------------------------------------------ keys

    def _candidate_keys(self, endpoint: Endpoint, notes: list[str]):
        if self.allow_agent and not endpoint.identities_only and os.environ.get("SSH_AUTH_SOCK"):
            try:
                agent_keys = paramiko.Agent().get_keys()
            except paramiko.SSHException:
                agent_keys = ()
            for agent_key in agent_keys:
                yield f"agent key {fingerprint(agent_key)}", agent_key
        for path in endpoint.identity_files:
            file_key = self._load(path, endpoint.identities_explicit, notes)
            if file_key is not None:
                yield f"key {path}", file_key

    def _load(self, path: Path, explicit: bool, notes: list[str]) -> paramiko.PKey | None:
        if path in self._keys:
            return self._keys[path]
        if not path.is_file():
            if explicit:
                notes.append(f"identity file {path} does not exist")
            return None
        key: paramiko.PKey | None
        try:
            key = paramiko.PKey.from_path(path)
        except TypeError:  # encrypted: paramiko needs the passphrase
            key = self._load_encrypted(path, notes)
        except (ValueError, paramiko.SSHException, OSError) as exc:
            why = "it is a public key: name the private one" if _is_public(path) else str(exc)
            notes.append(f"identity file {path} is not a private key ({why.split('. ')[0]})")
            return None
        if key is not None:
            self._keys[path] = key
        return key

    def _load_encrypted(self, path: Path, notes: list[str]) -> paramiko.PKey | None:
        for _ in range(PASSPHRASE_TRIES):
            try:
                passphrase = self.prompter(f"Enter passphrase for key '{path}': ", False)
            except NoTerminalError:
                notes.append(
                    f"identity file {path} is encrypted and there is no terminal to ask for "
                    f"its passphrase: load it into ssh-agent (ssh-add {path})"
                )
                return None
            try:
                # paramiko wants bytes here; its type stubs say str
                return paramiko.PKey.from_path(path, passphrase.encode())  # type: ignore[arg-type]
            except (ValueError, TypeError, paramiko.SSHException):
                continue
        notes.append(f"wrong passphrase for identity file {path}")
        return None

    # ------------------------------------------------- keyboard-interactive

    def _keyboard_interactive(
        self, transport: paramiko.Transport, endpoint: Endpoint, notes: list[str], required: bool
    ) -> bool:
        failure: list[BaseException] = []
        asked: list[str] = []

        def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
            answers = []
            for text, echo in prompts:
                asked.append(text.strip())
                if failure:
                    answers.append("")
                    continue
                try:
                    shown = "\n".join(s for s in (title, instructions, text) if s)
                    answers.append(self.prompter(shown, echo))
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    failure.append(exc)
                    answers.append("")
            return answers

        try:
            remaining = transport.auth_interactive(endpoint.user, handler)
        except paramiko.BadAuthenticationType:
            return False  # the server does not offer it: report the key failures
        except paramiko.AuthenticationException:
            remaining = None
        for exc in failure:
            if isinstance(exc, NoTerminalError):
                prompt = asked[0] if asked else "a code"
                raise AuthenticationError(
                    f"{endpoint.describe()} asks for {prompt!r} (keyboard-interactive, e.g. a "
                    "one-time code) and there is no terminal to ask on; run hpclaunch from a "
                    "terminal, or use key-only access for this host"
                ) from None
            raise exc
        if transport.is_authenticated():
            return True
        if asked:
            notes.append(f"keyboard-interactive answers to {asked[0]!r} were rejected")
        elif required and remaining:
            notes.append(f"the server still wants {', '.join(remaining)}")
        return False


def _is_public(path: Path) -> bool:
    try:
        head = path.read_bytes()[:32]
    except OSError:
        return False
    return head.startswith((b"ssh-", b"ecdsa-", b"sk-"))

"""Keyboard-interactive (MFA-style) prompts after the key, on a real sshd+PAM."""

from __future__ import annotations

import pytest

from hpclaunch.transport import AuthenticationError, NoTerminalError, SSHTransport

pytestmark = pytest.mark.ssh


def test_key_then_prompt_is_answered_on_the_terminal(mfa_sshd):
    asked = []

    def terminal(text, echo):
        asked.append((text, echo))
        return mfa_sshd.answer

    with SSHTransport("127.0.0.1", mfa_sshd.options(), prompter=terminal) as t:
        assert t.run(["whoami"]).stdout.strip() == mfa_sshd.user
        assert t.run(["true"]).ok
    assert [echo for _, echo in asked] == [False]  # asked once, not echoed
    assert "Password" in asked[0][0]


def test_prompt_without_terminal_is_one_clear_line(mfa_sshd):
    def no_terminal(text, echo):
        raise NoTerminalError("no terminal")

    with pytest.raises(AuthenticationError) as info:
        SSHTransport("127.0.0.1", mfa_sshd.options(), prompter=no_terminal).run(["true"])
    message = str(info.value)
    assert "\n" not in message
    assert "keyboard-interactive" in message and "no terminal" in message


def test_wrong_answer_is_refused(mfa_sshd):
    with pytest.raises(AuthenticationError, match="were rejected"):
        SSHTransport("127.0.0.1", mfa_sshd.options(), prompter=lambda text, echo: "wrong").run(
            ["true"]
        )

"""A people's request whose reply is lost: the CLI says it may have been carried out."""

from __future__ import annotations

import socket
import threading

from server_helpers import free_port, run_cli

MAY_HAVE = "may have carried the request out"


def _swallowing_server() -> tuple[int, list[bytes], threading.Thread]:
    """Reads one whole request, then hangs up without a reply (a proxy cutting it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            seen.append(head.split(b"\r\n")[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, seen, thread


def test_an_enqueue_whose_reply_is_lost_says_it_may_have_happened(tmp_path):
    port, seen, thread = _swallowing_server()
    env = {"HPCLAUNCH_TOKEN": "hpl_" + "x" * 43, "HPCLAUNCH_HOME": str(tmp_path)}
    out = run_cli("--server", f"http://127.0.0.1:{port}", "enqueue", "--", "true", env=env)
    thread.join(10)
    assert seen == [b"POST /api/v1/tasks HTTP/1.1"]  # the server did read it
    assert out.returncode == 4, out.stderr
    assert MAY_HAVE in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_enqueue_never_sent_says_only_that_the_server_is_unreachable(tmp_path):
    port = free_port()  # nothing listens: the connection is refused
    env = {"HPCLAUNCH_TOKEN": "hpl_" + "x" * 43, "HPCLAUNCH_HOME": str(tmp_path)}
    out = run_cli("--server", f"http://127.0.0.1:{port}", "enqueue", "--", "true", env=env)
    assert out.returncode == 4, out.stderr
    assert "cannot reach the hpclaunch server" in out.stderr
    assert MAY_HAVE not in out.stderr

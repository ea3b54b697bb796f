"""A TCP relay in front of the test sshd that tests can hold and cut: a real
network fault (the sshd and client see a dropped TCP connection)."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpRelay:
    """Relays 127.0.0.1:<port> to the sshd; ``cut()`` drops every live connection."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        # hold(): server-to-client bytes stop flowing (replies are held back)
        self.holding = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._live += [client, server]
            for a, b, replies in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pump, args=(a, b, replies), daemon=True).start()

    def hold(self) -> None:
        """Stop passing the server's bytes on (they are dropped with the connection)."""
        self.holding.set()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self.holding.is_set():
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every live connection; new ones flow normally again."""
        with self._lock:
            live, self._live = self._live, []
            self.holding.clear()
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()

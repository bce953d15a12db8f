# SPDX-License-Identifier: Apache-2.0
"""Operator input devices (terminal keyboard, foot pedal) read without X/Wayland
hooks or the `evdev` package, so they work headless and over ssh.

`FdReader` is the part both share: a file descriptor polled on a daemon
thread. An input device that goes away (terminal closed, pedal unplugged,
FIFO writer gone) is reported through `on_gone` and the `gone` event: a
strategy must be able to tell a dead device from an operator who presses
nothing.
"""

import logging
import os
import select
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class FdReader:
    read_size = 4096

    def __init__(self, on_gone: Callable[[str], None] | None = None, thread_name: str = 'input-reader'):
        self.fd: int | None = None
        self.on_gone = on_gone
        self.gone = threading.Event()
        self.gone_reason = ''
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # Subclass hooks ---------------------------------------------------------
    def _consume(self, data: bytes) -> None:
        raise NotImplementedError

    def _poll_timeout_s(self) -> float:
        # Bounds how long stop() waits for the thread.
        return 0.1

    def _idle(self) -> None:
        """Called when a poll timed out with nothing to read."""

    def _end_of_stream(self) -> str | None:
        """Read returned EOF: the reason the device is gone, or None to keep reading."""
        return 'end of stream'

    # Thread -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.fd is None:
            raise RuntimeError(f'{type(self).__name__}.start() before open()')
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLPRI)
        while not self._stop.is_set():
            if not poller.poll(self._poll_timeout_s() * 1000.0):
                self._idle()
                continue
            try:
                data = os.read(self.fd, self.read_size)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                self._lost(f'read failed: {e.strerror or e}')
                return
            if data:
                self._consume(data)
                continue
            reason = self._end_of_stream()
            if reason is not None:
                self._lost(reason)
                return

    def _lost(self, reason: str) -> None:
        self.gone_reason = reason
        self.gone.set()
        if self.on_gone is not None:
            try:
                self.on_gone(reason)
            except Exception:  # noqa: BLE001 - a faulty callback must not hide the loss
                log.exception('on_gone callback failed')

    @staticmethod
    def _call(callback, item) -> None:
        if callback is None:
            return
        try:
            callback(item)
        except Exception:  # noqa: BLE001 - one bad callback must not end the reader
            log.exception('input callback failed')

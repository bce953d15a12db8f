# SPDX-License-Identifier: Apache-2.0
"""Keys from a terminal: the one the process runs in, or any tty/pty path.

No global X/Wayland hook: this works headless and over ssh, and only sees
keys typed into that terminal. While open the terminal is in cbreak mode (no
line buffering, no echo); ISIG stays on, so Ctrl-C still stops the process
instead of arriving as a key. The previous mode comes back at close, on
exceptions through the context manager, and at interpreter exit.

A terminal reports presses only (no releases). An arrow arrives as an escape
sequence (ESC [ A, or ESC O A in application-cursor mode) that starts with
the same byte as a lone ESC, so ESC counts as a key of its own only when
nothing follows it within `esc_timeout_s`. Over ssh a sequence travels in one
packet, so a short timeout tells them apart; a very slow link may need more.
"""

import atexit
import codecs
import errno
import os
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.input import FdReader

CONTROLLING_TTY = '/dev/tty'
ESC = '\x1b'

_NAMED = {' ': 'space', '\t': 'tab', '\r': 'enter', '\n': 'enter', '\x7f': 'backspace', '\x08': 'backspace'}
_SEQUENCE_FINAL = {'A': 'up', 'B': 'down', 'C': 'right', 'D': 'left', 'H': 'home', 'F': 'end'}
_TILDE_NUMBER = {'1': 'home', '2': 'insert', '3': 'delete', '4': 'end', '5': 'page_up', '6': 'page_down'}
_MAX_SEQUENCE = 16

_FIX = (
    "run the node in the operator's terminal (ros2 run rollout_ros keyboard), or give "
    'tty_path (e.g. the /dev/pts/N that `tty` prints in that terminal).'
)


@dataclass(frozen=True)
class Key:
    name: str  # 'space', 'tab', 'enter', 'esc', 'up', ..., or the character itself
    code: int  # character code; 0 for keys that arrive as escape sequences
    stamp: float = 0.0  # time.time() when it was read


class KeyDecoder:
    """Terminal text to keys. Holds no clock: the reader calls timeout() when
    nothing followed a pending ESC in time."""

    def __init__(self):
        self._pending = ''
        self._after_cr = False

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def feed(self, text: str) -> list[Key]:
        keys: list[Key] = []
        for ch in text:
            if self._pending:
                keys += self._continue(ch)
            elif ch == ESC:
                self._pending = ESC
            else:
                keys += self._single(ch)
        return keys

    def timeout(self) -> list[Key]:
        pending, self._pending = self._pending, ''
        if not pending:
            return []
        # Whatever followed by hand (ESC then '[') is typed keys, not a sequence.
        return [Key('esc', 27)] + self.feed(pending[1:])

    def _single(self, ch: str) -> list[Key]:
        crlf = ch == '\n' and self._after_cr
        self._after_cr = ch == '\r'
        if crlf:
            return []  # some clients send CR LF for one Enter
        if ch in _NAMED:
            return [Key(_NAMED[ch], ord(ch))]
        if '\x01' <= ch <= '\x1a':
            return [Key('ctrl+' + chr(ord(ch) + 96), ord(ch))]
        if ch.isprintable():
            return [Key(ch, ord(ch))]
        return []

    def _continue(self, ch: str) -> list[Key]:
        seq = self._pending + ch
        if len(seq) == 2:
            if ch in '[O':
                self._pending = seq
                return []
            # ESC then an ordinary key (two quick presses, or Alt+key): both count.
            self._pending = ''
            return [Key('esc', 27)] + self.feed(ch)
        if '\x40' <= ch <= '\x7e':
            self._pending = ''
            return self._sequence(seq)
        if seq[1] == '[' and '\x20' <= ch <= '\x3f' and len(seq) < _MAX_SEQUENCE:
            self._pending = seq
            return []
        # Broken sequence: dropped, so its bytes do not come out as stray keys.
        self._pending = ''
        return self.feed(ch)

    @staticmethod
    def _sequence(seq: str) -> list[Key]:
        final = seq[-1]
        if final == '~':
            name = _TILDE_NUMBER.get(seq[2:-1].split(';')[0])
        else:
            name = _SEQUENCE_FINAL.get(final)  # modifiers (ESC [ 1 ; 5 A) are ignored
        return [Key(name, 0)] if name else []


class TerminalKeyReader(FdReader):
    def __init__(
        self,
        tty_path: str = '',
        on_key: Callable[[Key], None] | None = None,
        on_gone: Callable[[str], None] | None = None,
        esc_timeout_s: float = 0.05,
    ):
        super().__init__(on_gone, thread_name='keyboard-reader')
        if not 0.0 < esc_timeout_s <= 5.0:
            raise ConfigError(
                'esc_timeout_s', f'{esc_timeout_s} is out of range.', 'use a few tens of milliseconds (0.05).'
            )
        self.path = tty_path or CONTROLLING_TTY
        self.on_key = on_key
        self.esc_timeout_s = float(esc_timeout_s)
        self._saved_mode = None
        self._decoder = KeyDecoder()
        self._utf8 = codecs.getincrementaldecoder('utf-8')(errors='replace')

    def open(self) -> None:
        if self.fd is not None:
            return
        fd = self._open_tty()
        try:
            saved = termios.tcgetattr(fd)
            mode = [*saved[:6], list(saved[6])]
            mode[3] &= ~(termios.ECHO | termios.ICANON)
            mode[0] &= ~termios.ICRNL  # keep CR as CR: Enter and Ctrl-J stay apart
            mode[6][termios.VMIN] = 1
            mode[6][termios.VTIME] = 0
            # TCSAFLUSH: keys typed before we were ready are stale, not commands.
            termios.tcsetattr(fd, termios.TCSAFLUSH, mode)
        except termios.error as e:
            os.close(fd)
            raise ConfigError('tty_path', f'could not set the mode of {self.path}: {e}.', _FIX) from e
        self.fd, self._saved_mode = fd, saved
        atexit.register(self._restore)

    def close(self) -> None:
        self.stop()
        self._restore()
        atexit.unregister(self._restore)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def _open_tty(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise ConfigError('tty_path', f'{self.path} does not exist.', _FIX) from e
        except PermissionError as e:
            raise ConfigError(
                'tty_path',
                f'no permission to read {self.path}.',
                'give a terminal owned by this user, or run as its owner.',
            ) from e
        except OSError as e:
            if e.errno == errno.ENXIO and self.path == CONTROLLING_TTY:
                raise ConfigError(
                    'tty_path',
                    'this process has no controlling terminal (started by '
                    'a launch file, a service or with its terminal detached).',
                    _FIX,
                ) from e
            raise ConfigError('tty_path', f'cannot open {self.path}: {e.strerror}.', _FIX) from e
        if not os.isatty(fd):
            os.close(fd)
            raise ConfigError('tty_path', f'{self.path} is not a terminal.', _FIX)
        return fd

    def _restore(self) -> None:
        saved, self._saved_mode = self._saved_mode, None
        if saved is None or self.fd is None:
            return
        try:
            termios.tcsetattr(self.fd, termios.TCSANOW, saved)
        except termios.error:
            pass  # the terminal is already gone: there is no mode left to restore

    def _poll_timeout_s(self) -> float:
        return self.esc_timeout_s if self._decoder.pending else super()._poll_timeout_s()

    def _idle(self) -> None:
        if self._decoder.pending:
            self._emit(self._decoder.timeout())

    def _consume(self, data: bytes) -> None:
        self._emit(self._decoder.feed(self._utf8.decode(data)))

    def _end_of_stream(self) -> str | None:
        return f'{self.path} was closed'

    def _emit(self, keys: list[Key]) -> None:
        now = time.time()
        for key in keys:
            self._call(self.on_key, Key(key.name, key.code, now))

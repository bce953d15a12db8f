# SPDX-License-Identifier: Apache-2.0
"""Foot pedal, or any Linux evdev key device, read without the `evdev` package.

The device file yields `struct input_event` records. Only EV_KEY records
matter: value 1 = press, 0 = release, 2 = auto-repeat; each carries the
kernel's own timestamp (CLOCK_REALTIME unless someone changed the device's
clock), which is when the foot went down, not when we got round to reading.

With `grab` the device is taken exclusively (EVIOCGRAB), so a pedal that
reports itself as a keyboard does not also type 'a' into the operator's
shell. A FIFO or regular file of packed records stands in for a device
(tests, replays); grabbing them is unsupported and simply skipped.

When the device counts as gone (reported, never a silent stop):
- character device: a read error (ENODEV when unplugged) or EOF;
- FIFO: EOF, i.e. the last writer closed it after one had connected
  (poll() does not report EOF before the first writer);
- regular file: followed like `tail -f`; gone once it is removed (unlinked).
"""

import errno
import fcntl
import json
import os
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.input import FdReader

# struct input_event on 64-bit Linux: struct timeval (two native longs), u16 type, u16 code,
# s32 value. 32-bit systems with a 64-bit time_t lay it out differently; they are not supported.
INPUT_EVENT = struct.Struct('@llHHi')
EV_SYN, EV_KEY = 0, 1
SYN_DROPPED = 3
KEY_MAX = 0x2FF

# ioctl numbers of <linux/input.h>: _IOR('E', 0x01, int) and _IOW('E', 0x90, int).
EVIOCGVERSION = 0x80044501
EVIOCGRAB = 0x40044590


def _eviocgname(length: int) -> int:
    return 0x80000000 | (length << 16) | (ord('E') << 8) | 0x06


# lerobot's defaults (DAggerPedalConfig in lerobot/rollout/configs.py, device path from
# lerobot/utils/pedal.py): a PCsensor FootSwitch whose three pedals send KEY_A, KEY_B, KEY_C,
# bound to pause_resume, correction and upload. The names are evdev's key names, the same
# strings lerobot's pedal listener passes on, so bindings written for lerobot match unchanged.
DEFAULT_DEVICE_PATH = '/dev/input/by-id/usb-PCsensor_FootSwitch-event-kbd'
DEFAULT_KEY_CODES = {'KEY_A': 30, 'KEY_B': 48, 'KEY_C': 46}
BY_ID_DIR = '/dev/input/by-id'


@dataclass(frozen=True)
class PedalEvent:
    name: str | None  # configured name of the code; None for a code not in key_codes
    code: int  # evdev key code
    value: int  # 1 press, 0 release, 2 auto-repeat
    stamp_ns: int  # the event's own timestamp [ns], exact (a float second loses the usec)

    @property
    def stamp(self) -> float:
        return self.stamp_ns * 1e-9


def _evdev_key_names() -> dict[str, int]:
    """evdev's names of the keys a pedal or small keypad sends (Linux input-event-codes.h values)."""
    names = {
        'KEY_ESC': 1,
        'KEY_MINUS': 12,
        'KEY_EQUAL': 13,
        'KEY_BACKSPACE': 14,
        'KEY_TAB': 15,
        'KEY_LEFTBRACE': 26,
        'KEY_RIGHTBRACE': 27,
        'KEY_ENTER': 28,
        'KEY_LEFTCTRL': 29,
        'KEY_SEMICOLON': 39,
        'KEY_APOSTROPHE': 40,
        'KEY_GRAVE': 41,
        'KEY_LEFTSHIFT': 42,
        'KEY_BACKSLASH': 43,
        'KEY_COMMA': 51,
        'KEY_DOT': 52,
        'KEY_SLASH': 53,
        'KEY_RIGHTSHIFT': 54,
        'KEY_LEFTALT': 56,
        'KEY_SPACE': 57,
        'KEY_CAPSLOCK': 58,
        'KEY_F11': 87,
        'KEY_F12': 88,
        'KEY_RIGHTCTRL': 97,
        'KEY_RIGHTALT': 100,
        'KEY_HOME': 102,
        'KEY_UP': 103,
        'KEY_PAGEUP': 104,
        'KEY_LEFT': 105,
        'KEY_RIGHT': 106,
        'KEY_END': 107,
        'KEY_DOWN': 108,
        'KEY_PAGEDOWN': 109,
        'KEY_INSERT': 110,
        'KEY_DELETE': 111,
        'KEY_MUTE': 113,
        'KEY_VOLUMEDOWN': 114,
        'KEY_VOLUMEUP': 115,
        'KEY_PAUSE': 119,
        'KEY_NEXTSONG': 163,
        'KEY_PLAYPAUSE': 164,
        'KEY_PREVIOUSSONG': 165,
        'BTN_LEFT': 0x110,
        'BTN_RIGHT': 0x111,
        'BTN_MIDDLE': 0x112,
    }
    # Keyboard rows are numbered left to right.
    for first, row in ((2, '1234567890'), (16, 'QWERTYUIOP'), (30, 'ASDFGHJKL'), (44, 'ZXCVBNM')):
        names.update({f'KEY_{k}': first + i for i, k in enumerate(row)})
    names.update({f'KEY_F{n}': 58 + n for n in range(1, 11)})
    names.update({f'BTN_{n}': 0x100 + n for n in range(10)})
    return names


EVDEV_KEYS = _evdev_key_names()
EVDEV_NAMES = {code: name for name, code in EVDEV_KEYS.items()}


def key_code(key, param: str = 'key_codes') -> int:
    """An evdev key given by name (KEY_A, as lerobot and evtest write it) or number (30, "30")."""
    fix = (
        'name it as evdev does (KEY_A, KEY_B, KEY_SPACE, KEY_F1, BTN_0...) or give its number; '
        '`evtest` shows both for the keys a pedal sends.'
    )
    if isinstance(key, str) and key.strip().upper() in EVDEV_KEYS:
        return EVDEV_KEYS[key.strip().upper()]
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int):
        raise ConfigError(param, f'{key!r} is not an evdev key name or code.', fix)
    if not 0 < key <= KEY_MAX:
        raise ConfigError(param, f'{key!r} is not an evdev key code (1..{KEY_MAX}).', fix)
    return key


def parse_key_codes(text: str) -> dict[str, int]:
    """`key_codes` parameter: the keys to publish, by evdev name or number (a JSON list, or a comma-
    separated one), published under their evdev names; or a JSON object naming each one: published
    name -> key (name or number)."""
    fix = 'give the keys as ["KEY_A", "KEY_B", 46] or KEY_A,KEY_B,46, or name them as {"pause": "KEY_A", "push": 46}.'
    stripped = text.strip()
    if stripped[:1] in '[{':
        try:
            keys = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ConfigError('key_codes', f'{text!r} is not valid JSON ({e.msg}).', fix) from e
    else:
        keys = [k.strip() for k in stripped.split(',') if k.strip()]
    if isinstance(keys, list):
        codes = [key_code(k) for k in keys]
        keys = {EVDEV_NAMES.get(c, f'code_{c}'): c for c in codes}
        if len(keys) != len(codes):
            raise ConfigError('key_codes', f'{text!r} names one key twice.', 'give each key once.')
    if not isinstance(keys, dict) or not keys or not all(keys):
        raise ConfigError('key_codes', f'{text!r} gives no keys.', fix)
    codes = {name: key_code(key) for name, key in keys.items()}
    if len(set(codes.values())) != len(codes):
        raise ConfigError('key_codes', f'{text!r} gives one code two names.', 'give each code one name.')
    return codes


def available_devices() -> str:
    try:
        names = sorted(os.listdir(BY_ID_DIR))
    except OSError:
        return f'{BY_ID_DIR} does not exist here (no input devices, or a container without them).'
    if not names:
        return f'{BY_ID_DIR} is empty.'
    return f'Devices in {BY_ID_DIR}: ' + ', '.join(names) + '.'


class PedalReader(FdReader):
    def __init__(
        self,
        device_path: str = DEFAULT_DEVICE_PATH,
        key_codes: dict[str, int] | None = None,
        on_event: Callable[[PedalEvent], None] | None = None,
        on_gone: Callable[[str], None] | None = None,
        grab: bool = True,
    ):
        super().__init__(on_gone, thread_name='pedal-reader')
        self.device_path = device_path
        self.names = {code: name for name, code in (key_codes or DEFAULT_KEY_CODES).items()}
        self.on_event = on_event
        self.grab = grab
        self.kind = ''  # 'evdev', 'fifo' or 'file'
        self.device_name = ''  # what the kernel calls the device (evdev only)
        self.grabbed = False
        self.grab_note = ''  # why a requested grab did not happen
        self.events = 0  # EV_KEY records read
        self.overflows = 0  # SYN_DROPPED: the kernel's buffer overflowed, events were lost
        self.last_event_mono: float | None = None
        self._buf = bytearray()

    def open(self) -> None:
        if self.fd is not None:
            return
        path = self.device_path
        if not path:
            raise ConfigError(
                'device_path',
                'is empty.',
                f"give the pedal's event device, e.g. {DEFAULT_DEVICE_PATH}. {available_devices()}",
            )
        kind = self._kind(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError as e:
            raise self._permission_error() from e
        except OSError as e:
            raise ConfigError(
                'device_path',
                f'cannot open {path}: {e.strerror}.',
                f'check the pedal is plugged in. {available_devices()}',
            ) from e
        try:
            if kind == 'evdev':
                self.device_name = self._check_evdev(fd)
            if self.grab:
                self._grab(fd, kind)
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.kind = fd, kind

    def close(self) -> None:
        self.stop()
        if self.fd is not None:
            os.close(self.fd)  # also releases a grab
            self.fd = None
        self.grabbed = False

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    # Opening ----------------------------------------------------------------
    def _kind(self, path: str) -> str:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError as e:
            raise ConfigError(
                'device_path',
                f'{path} does not exist. {available_devices()}',
                'plug the pedal in and give its /dev/input/by-id/...-event-kbd path.',
            ) from e
        except PermissionError as e:
            raise self._permission_error() from e
        if stat.S_ISCHR(mode):
            return 'evdev'
        if stat.S_ISFIFO(mode):
            return 'fifo'
        if stat.S_ISREG(mode):
            return 'file'
        raise ConfigError(
            'device_path',
            f'{path} is not an input device (not a character device).',
            f"give the pedal's ...-event-kbd entry. {available_devices()}",
        )

    def _permission_error(self) -> ConfigError:
        return ConfigError(
            'device_path',
            f'no permission to read {self.device_path} (uid {os.geteuid()}).',
            'add the user to the input group (sudo usermod -aG input $USER, then log in again), or '
            'add a udev rule such as SUBSYSTEM=="input", ATTRS{idVendor}=="<vendor id>", '
            'MODE="0660", GROUP="input" in /etc/udev/rules.d/ and replug the pedal. ' + available_devices(),
        )

    def _check_evdev(self, fd: int) -> str:
        try:
            fcntl.ioctl(fd, EVIOCGVERSION, bytearray(4))
        except OSError as e:
            raise ConfigError(
                'device_path',
                f'{self.device_path} is a character device but not an '
                'evdev input device (a serial port, or /dev/input/mouseN or jsN?).',
                "give the pedal's /dev/input/by-id/...-event-kbd entry (event, not mouse "
                f'or js). {available_devices()}',
            ) from e
        buf = bytearray(256)
        try:
            fcntl.ioctl(fd, _eviocgname(len(buf)), buf)
        except OSError:
            return ''
        return bytes(buf).split(b'\0', 1)[0].decode(errors='replace')

    def _grab(self, fd: int, kind: str) -> None:
        try:
            fcntl.ioctl(fd, EVIOCGRAB, 1)
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise ConfigError(
                    'device_path',
                    f'another program has grabbed {self.device_path} '
                    'exclusively, so no pedal event would reach this node.',
                    'stop that program (another pedal node?), or unplug and replug the pedal.',
                ) from e
            # ENOTTY/EINVAL: a FIFO, a file or a driver without grab support.
            what = {'fifo': 'FIFO', 'file': 'regular file'}.get(kind, 'device')
            self.grab_note = f'grab unsupported on this {what} ({e.strerror})'
            return
        self.grabbed = True

    # Reading ----------------------------------------------------------------
    def _consume(self, data: bytes) -> None:
        # A FIFO may deliver part of a record; the rest comes with the next read.
        self._buf += data
        whole = len(self._buf) - len(self._buf) % INPUT_EVENT.size
        for sec, usec, type_, code, value in INPUT_EVENT.iter_unpack(bytes(self._buf[:whole])):
            if type_ == EV_SYN and code == SYN_DROPPED:
                self.overflows += 1
            if type_ != EV_KEY:
                continue
            self.events += 1
            self.last_event_mono = time.monotonic()
            self._call(self.on_event, PedalEvent(self.names.get(code), code, value, sec * 1_000_000_000 + usec * 1000))
        del self._buf[:whole]

    def _end_of_stream(self) -> str | None:
        if self.kind == 'fifo':
            return "the FIFO's writer closed it"
        if self.kind != 'file':
            return 'the device reported end of stream'
        if os.fstat(self.fd).st_nlink == 0:
            return 'the file was removed'
        self._stop.wait(0.05)  # following the file: wait for more records
        return None

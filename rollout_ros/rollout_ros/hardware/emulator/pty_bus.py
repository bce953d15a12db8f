# SPDX-License-Identifier: Apache-2.0
"""What every servo-bus emulator shares: the pty the driver opens as its
serial port, the serving thread, first-order servo dynamics and injected
bus faults. The protocol and control table are the subclasses' business.
"""

import argparse
import math
import os
import random
import select
import signal
import sys
import threading
import time
import tty

# A partial packet still incomplete after a whole poll period is line noise;
# real servos likewise drop a packet whose bytes stop arriving.
POLL_S = 0.05


class FirstOrderServo:
    """Shaft state with first-order position tracking. Subclasses name their
    family's control-table module (`control_table`), keep the register image
    in `self.table`, and implement _update() (advance the physics to now) and
    _publish() (refresh the Present_* registers), both under self._lock."""

    control_table = None  # module with lookup/encode_value/decode_value/MODEL_NUMBER

    def __init__(self, tau: float, position: float):
        self.tau = tau
        self.actual_position = float(position)
        self._velocity = 0.0  # ticks/s
        self._last = time.monotonic()
        self._lock = threading.RLock()

    def _update(self) -> None:
        raise NotImplementedError

    def _publish(self) -> None:
        raise NotImplementedError

    # -- raw register access -------------------------------------------------

    def _get(self, name: str) -> int:
        ct = self.control_table
        addr, size, _ = ct.lookup(name)
        return ct.decode_value(name, int.from_bytes(self.table[addr : addr + size], 'little'))

    def _set(self, name: str, value: int) -> None:
        ct = self.control_table
        addr, size, _ = ct.lookup(name)
        self.table[addr : addr + size] = ct.encode_value(name, value).to_bytes(size, 'little')

    @property
    def id(self) -> int:
        return self.table[self.control_table.CONTROL_TABLE['ID'][0]]

    @property
    def model_number(self) -> int:
        return self.control_table.MODEL_NUMBER[self.model]

    def register(self, name: str) -> int:
        with self._lock:
            self._update()
            return self._get(name)

    def set_actual_position(self, ticks: float) -> None:
        """Move the shaft from outside (a hand moving the arm, a test)."""
        with self._lock:
            self._update()
            self.actual_position = float(ticks)
            self._velocity = 0.0
            self._publish()

    def _elapsed(self) -> float:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        return dt

    def _track(self, target: float, dt: float) -> None:
        if self.tau > 0:
            self.actual_position += (target - self.actual_position) * (1.0 - math.exp(-dt / self.tau))
        else:
            self.actual_position = target
        if abs(target - self.actual_position) < 1e-3:
            self.actual_position = target  # an exponential never lands; real servos do
        self._velocity = (target - self.actual_position) / self.tau if self.tau > 0 else 0.0

    def _spin(self, velocity: float, dt: float) -> None:
        self._velocity = velocity
        self.actual_position += velocity * dt

    def _halt(self) -> None:
        self._velocity = 0.0


class _Fault:
    def __init__(self) -> None:
        self.count = 0
        self.probability = 0.0


class BusFaults:
    """Failures injected into the emulator's replies, for tests of the
    driver's fault handling. A reply is everything one request gets back
    (all status packets of a sync read together). Thread-safe."""

    def __init__(self, seed: int | None = None):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._drop = _Fault()
        self._corrupt = _Fault()
        self._short = _Fault()
        self.dropped = 0
        self.corrupted = 0
        self.shortened = 0

    def drop_replies(self, count: int = 1, probability: float = 0.0) -> None:
        """Lose the next `count` replies, then each later one with `probability`."""
        self._set(self._drop, count, probability)

    def corrupt_checksums(self, count: int = 1, probability: float = 0.0) -> None:
        """Spoil the checksum of the next `count` replies, then of each later one
        with `probability`."""
        self._set(self._corrupt, count, probability)

    def short_replies(self, count: int = 1, probability: float = 0.0) -> None:
        """Answer the next `count` requests, then each later one with `probability`,
        with a well-formed status packet (valid checksum) that lacks its data:
        dynamixel-sdk then indexes past the end of the reply (IndexError)."""
        self._set(self._short, count, probability)

    def clear(self) -> None:
        self._set(self._drop, 0, 0.0)
        self._set(self._corrupt, 0, 0.0)
        self._set(self._short, 0, 0.0)

    def _set(self, fault: _Fault, count: int, probability: float) -> None:
        if count < 0 or not 0.0 <= probability <= 1.0:
            raise ValueError(f'need count >= 0 and 0 <= probability <= 1, got {count}, {probability}')
        with self._lock:
            fault.count, fault.probability = count, probability

    def _hit(self, fault: _Fault) -> bool:
        if fault.count:
            fault.count -= 1
            return True
        return fault.probability > 0 and self._rng.random() < fault.probability

    def apply(self, reply: bytes, shorten=None) -> bytes:
        """What actually goes on the wire for `reply` (b"" when dropped).
        `shorten(reply)` re-encodes a reply without its data (protocol's business)."""
        with self._lock:
            if self._hit(self._drop):
                self.dropped += 1
                return b''
            if shorten is not None and self._hit(self._short):
                self.shortened += 1
                return shorten(reply)
            if self._hit(self._corrupt):
                self.corrupted += 1
                # Both protocols end a packet with (part of) its checksum.
                return reply[:-1] + bytes([reply[-1] ^ 0xFF])
        return reply


class PtyBusEmulator:
    """A servo bus on a pseudo-terminal. Subclasses pass their servos (id ->
    FirstOrderServo with read/write) and a packet parser, and implement
    _handle(packet) -> reply bytes; every method runs under self._lock."""

    thread_name = 'servo-bus-emulator'

    def __init__(self, servos: dict, parser, link_path: str | None = None):
        self._servos = dict(servos)
        self._parser = parser
        self._link_path = link_path
        self._lock = threading.RLock()
        self._goal_writes: list[tuple[float, int, int]] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.faults = BusFaults()

    # -- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> str | None:
        """The pty slave path (valid after start()); link_path, if set, points at it."""
        return self._port

    @property
    def link_path(self) -> str | None:
        return self._link_path

    def start(self) -> str:
        if self._thread is not None:
            return self.port
        self._master, self._slave = os.openpty()
        # Raw mode so the line discipline neither echoes our replies back nor
        # rewrites bytes like 0x0D/0x11 before the driver has configured the
        # port; we keep the slave open so the master never sees EIO between clients.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._port = os.ttyname(self._slave)
        if self._link_path:
            if os.path.islink(self._link_path):
                os.unlink(self._link_path)  # stale link from an earlier run
            os.symlink(self._port, self._link_path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._halt_serving()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        if self._link_path and os.path.islink(self._link_path):
            os.unlink(self._link_path)

    def close_port(self) -> None:
        """Hang up like an unplugged adapter: the driver's next read or write
        on the port fails with an I/O error. stop() still cleans up."""
        self._halt_serving()
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def _halt_serving(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test accessors ------------------------------------------------------------

    def servo(self, servo_id: int):
        with self._lock:
            return self._servos[servo_id]

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._servos)

    @property
    def goal_writes(self) -> list[tuple[float, int, int]]:
        """Snapshot of (monotonic_time, id, goal_ticks) for every Goal_Position write received."""
        with self._lock:
            return list(self._goal_writes)

    def clear_goal_writes(self) -> None:
        with self._lock:
            self._goal_writes.clear()

    def register(self, servo_id: int, name: str) -> int:
        return self.servo(servo_id).register(name)

    # -- serving -----------------------------------------------------------------

    def _handle(self, packet) -> bytes:
        raise NotImplementedError

    def _shorten(self, reply: bytes) -> bytes:
        """`reply` with its first status packet re-encoded without data."""
        raise NotImplementedError

    def _record_goal(self, servo_id: int, goal: int) -> None:
        self._goal_writes.append((time.monotonic(), servo_id, goal))

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], POLL_S)
            if not ready:
                self._parser.reset()
                continue
            try:
                data = os.read(self._master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            for packet in self._parser.feed(data):
                with self._lock:
                    reply = self._handle(packet)
                if reply:
                    self._send(self.faults.apply(reply, self._shorten))

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                return  # nobody is reading the slave: a real bus would lose these bytes too
            except OSError:
                return


# -- command line ------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(',') if x.strip()]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--link', help='also expose the port under this symlink path')
    parser.add_argument('--tau', type=float, default=0.05, help='position time constant in seconds')
    parser.add_argument(
        '--initial', type=int_list, default=[2048], help='initial position in ticks, one for all or one per id'
    )
    parser.add_argument(
        '--drop-probability', type=float, default=0.0, help='lose each reply with this probability (fault injection)'
    )
    parser.add_argument(
        '--corrupt-probability',
        type=float,
        default=0.0,
        help='spoil the checksum of each reply with this probability (fault injection)',
    )
    parser.add_argument(
        '--short-probability',
        type=float,
        default=0.0,
        help='send each reply without its data with this probability (fault injection)',
    )
    parser.add_argument(
        '--goal-log',
        metavar='PATH',
        help='at exit, write every Goal_Position write received to PATH, one '
        "'<CLOCK_MONOTONIC s> <id> <ticks>' line each (what the robot felt, for benchmarks)",
    )
    parser.add_argument(
        '--realtime',
        type=int,
        default=0,
        metavar='PRIORITY',
        help='serve at SCHED_FIFO PRIORITY (1-99) like servo firmware answers, so a loaded '
        'machine does not make replies late; 0 = normal scheduling',
    )


def initial_positions(parser: argparse.ArgumentParser, args: argparse.Namespace, ids: list[int]) -> dict[int, int]:
    if len(args.initial) not in (1, len(ids)):
        parser.error('--initial takes one value or one per id')
    initial = args.initial * len(ids) if len(args.initial) == 1 else args.initial
    return dict(zip(ids, initial))


def serve_until_signal(emulator: PtyBusEmulator, args: argparse.Namespace) -> int:
    """Print `PORT <path>` once serving, then serve until SIGTERM/SIGINT."""
    if args.realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.realtime))
        except (OSError, AttributeError) as e:
            print(
                f'--realtime {args.realtime}: not permitted here ({e}); serving at normal priority',
                file=sys.stderr,
                flush=True,
            )
    emulator.faults.drop_replies(0, args.drop_probability)
    emulator.faults.corrupt_checksums(0, args.corrupt_probability)
    emulator.faults.short_replies(0, args.short_probability)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    emulator.start()
    try:
        print(f'PORT {emulator.port}', flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        emulator.stop()
        if args.goal_log:
            write_goal_log(emulator.goal_writes, args.goal_log)
    return 0


def write_goal_log(writes: list[tuple[float, int, int]], path: str) -> None:
    with open(path, 'w') as f:
        f.writelines(f'{t:.6f} {servo_id} {ticks}\n' for t, servo_id, ticks in writes)


def read_goal_log(path: str) -> list[tuple[float, int, int]]:
    with open(path) as f:
        return [(float(t), int(i), int(g)) for t, i, g in (line.split() for line in f if line.strip())]

# SPDX-License-Identifier: Apache-2.0
"""What every servo bus shares, whatever its protocol: the one exception the
driver node and FollowerArm handle, the port errors that turn into it, and
the connect/disconnect lifecycle."""

import termios

# An unplugged adapter surfaces as OSError (pyserial's SerialException is
# one) or termios.error; callers handle bus trouble through BusError alone.
PORT_ERRORS = (OSError, termios.error)


class BusError(RuntimeError):
    """Communication with the servo bus failed or the bus is not what we expect."""


class ServoBusLifecycle:
    """Disconnect (torque off first, if asked) and use as a context manager.

    Subclasses provide connect(), set_torque(), _close() and is_connected.
    """

    def disconnect(self, disable_torque: bool = True) -> None:
        if not self.is_connected:
            return
        try:
            if disable_torque:
                self.set_torque(False)
        finally:
            self._close()

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

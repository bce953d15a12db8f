"""Operator input: a keyboard or a foot pedal node publishing
`<input_device>/events` (rollout_ros_interfaces/InputEvent) in the namespace.

The keyboard reads the terminal `ros2 launch` runs in (or tty_path); launched
without a terminal, use input_device:=pedal, or use_input:=false and
`ros2 run rollout_ros keyboard` in a terminal of its own.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # launch files are not a package
from rollout_launch import Arg, component, input_devices, lifecycle_node  # noqa: E402

ARGS = [
    Arg('input_device', 'keyboard', 'keyboard, pedal (evdev foot switch) or none (lerobot '
        '--strategy.input_device).', ('keyboard', 'pedal', 'none')),
    Arg('pedal_device_path', '', "pedal: evdev device (/dev/input/by-id/...-event-kbd); '' = params_file's "
        '(lerobot --strategy.pedal.device_path).'),
    Arg('tty_path', '', "keyboard: terminal to read keys from; '' = params_file's (default: the terminal of "
        'ros2 launch).'),
]
# '' leaves the key to params_file, where the device defaults live.
DEVICE_PARAMS = {'pedal': ('device_path', 'pedal_device_path'), 'keyboard': ('tty_path', 'tty_path')}


def nodes(a):
    out = []
    for device in input_devices(a):
        param, arg = DEVICE_PARAMS[device]
        out.append(lifecycle_node(a, device, device, **({param: a[arg]} if a[arg] else {})))
    return out


def generate_launch_description():
    return component('input', ARGS, nodes, config='input.yaml')

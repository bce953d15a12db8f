# SPDX-License-Identifier: Apache-2.0
"""Operator input: a keyboard or a foot pedal node publishing
`<input_device>/events` (rollout_ros_interfaces/InputEvent) in the namespace.

The keyboard reads the terminal `ros2 launch` runs in (or tty_path); launched
without a terminal, use input_device:=pedal, or use_input:=false and
`ros2 run rollout_ros keyboard` in a terminal of its own.
"""

from rollout_ros.launch_support import component_launch


def generate_launch_description():
    return component_launch('input')

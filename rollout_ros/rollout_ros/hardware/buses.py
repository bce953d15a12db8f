# SPDX-License-Identifier: Apache-2.0
"""Bus class per robot family; all share DynamixelBus's interface
(connect, read, write, sync_read, sync_write, set_torque, disconnect)."""

from rollout_ros.hardware.robots import RobotSpec


def make_bus(spec: RobotSpec, port: str, can_options: dict | None = None):
    """`can_options` (CAN buses only): interface, fd, bitrate, data_bitrate."""
    motors = {m.name: (m.id, m.model) for m in spec.motors}
    if spec.bus == 'dynamixel':
        from rollout_ros.hardware.dynamixel.bus import DynamixelBus

        return DynamixelBus(port, motors)
    if spec.bus == 'feetech':
        from rollout_ros.hardware.feetech.bus import FeetechBus

        return FeetechBus(port, motors)
    if spec.bus == 'damiao':
        from rollout_ros.hardware.damiao.bus import DamiaoBus

        return DamiaoBus(
            port,
            {m.name: (m.id, m.recv_id, m.model) for m in spec.motors},
            gains={name: (kp, kd) for name, kp, kd in spec.gains},
            **(can_options or {}),
        )
    raise ValueError(f'no bus class for {spec.bus!r}')

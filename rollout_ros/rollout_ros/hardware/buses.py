"""Bus class per robot family; all share DynamixelBus's interface
(connect, read, write, sync_read, sync_write, set_torque, disconnect)."""

from rollout_ros.hardware.robots import RobotSpec


def make_bus(spec: RobotSpec, port: str):
    motors = {m.name: (m.id, m.model) for m in spec.motors}
    if spec.bus == 'dynamixel':
        from rollout_ros.hardware.dynamixel.bus import DynamixelBus
        return DynamixelBus(port, motors)
    if spec.bus == 'feetech':
        from rollout_ros.hardware.feetech.bus import FeetechBus
        return FeetechBus(port, motors)
    raise ValueError(f'no bus class for {spec.bus!r}')

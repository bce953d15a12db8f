# SPDX-License-Identifier: Apache-2.0
"""Bus cost of one control tick: sync_read of 6 present positions plus a
sync_write of 6 goals, through dynamixel-sdk against the emulated Koch bus."""

import json
import time

import numpy as np

from rollout_ros.hardware.dynamixel.bus import DynamixelBus
from rollout_ros.hardware.emulator.servo_bus_emulator import KOCH_IDS, KOCH_MODELS, ServoBusEmulator

NAMES = ['shoulder_pan', 'shoulder_lift', 'elbow_flex', 'wrist_flex', 'wrist_roll', 'gripper']


def main(iterations: int = 500) -> None:
    with ServoBusEmulator(dict(zip(KOCH_IDS, KOCH_MODELS))) as emu:
        bus = DynamixelBus(emu.port, {n: (i, m) for n, i, m in zip(NAMES, KOCH_IDS, KOCH_MODELS)})
        bus.connect()
        bus.set_torque(True)
        pairs = []
        for k in range(iterations):
            t0 = time.perf_counter()
            bus.sync_read('Present_Position')
            bus.sync_write('Goal_Position', {n: 2000 + k % 100 for n in NAMES})
            pairs.append((time.perf_counter() - t0) * 1e3)
        bus.disconnect(disable_torque=True)
    a = np.array(pairs)
    result = {
        'bench': 'servo_bus_tick',
        'servos': 6,
        'iterations': iterations,
        'pair_ms_p50': round(float(np.percentile(a, 50)), 3),
        'pair_ms_p99': round(float(np.percentile(a, 99)), 3),
        'pair_ms_max': round(float(a.max()), 3),
    }
    print(f'sync_read(6)+sync_write(6): p50 {result["pair_ms_p50"]} ms, p99 {result["pair_ms_p99"]} ms')
    print(json.dumps(result))


if __name__ == '__main__':
    main()

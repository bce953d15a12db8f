# SPDX-License-Identifier: Apache-2.0
"""`rollout_emulate <robot_type>`: an emulated arm on its own, to try any checkpoint without hardware.

It starts the demo's servo bus emulator (a pseudo-terminal that dynamixel-sdk or our Feetech code
talks to as to /dev/ttyACM0), writes a calibration for it, prints its port and the flags that
reach it from `rollout` and `ros2 launch`, and runs until Ctrl-C.
"""

import argparse
import signal
import sys
import threading
from pathlib import Path

from rollout_ros.demo import EMULATORS, ROBOT_ID, initial_positions, start_emulator, write_calibration


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='rollout_emulate', description=__doc__.splitlines()[0])
    p.add_argument('robot_type', choices=sorted(k for _, presets in EMULATORS.values() for k in presets))
    p.add_argument('--workdir', default='.demo', help='where the calibration and the emulator log go')
    args = p.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    calib_dir = write_calibration(workdir, args.robot_type)
    log = workdir / 'logs' / f'emulate_{args.robot_type}.log'
    emulator, port = start_emulator(log, initial_positions(args.robot_type), args.robot_type)
    print(f'PORT {port}')
    print(
        f'rollout: --robot.type={args.robot_type} --robot.port={port} --robot.id={ROBOT_ID} '
        f'--robot.calibration_dir={calib_dir}'
    )
    print(
        f'ros2 launch: robot_type:={args.robot_type} robot_port:={port} robot_id:={ROBOT_ID} '
        f'calibration_dir:={calib_dir}'
    )
    print(f'emulator log: {log}; Ctrl-C stops it', flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and emulator.poll() is None:
        stop.wait(0.5)
    if emulator.poll() is not None:
        print(f'rollout_emulate: the emulator exited ({emulator.returncode}); see {log}', file=sys.stderr)
        return 1
    emulator.terminate()
    emulator.wait(timeout=5)
    return 0


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
"""`make demo`: a real rollout on the embedded default.

An emulated arm on a pseudo-terminal (its own process: a Koch follower driven
through dynamixel-sdk by our driver node, or an SO-100/SO-101 through our
Feetech protocol over pyserial; OpenArms are Damiao motors on a python-can
channel: vcan if the kernel has one, else udp_multicast), a camera node reading a generated
video file through OpenCV, a tiny random-weight ACT checkpoint saved in
LeRobot's format, and a strategy running the loop at 30 Hz:

- base: the run alone;
- sentry: everything recorded, episodes rotated at a small video size so a
  short demo shows several;
- highlight: a scripted operator presses the save key twice, twice over:
  each episode starts with the seconds before the first press;
- dagger: an emulated Koch leader arm (two OpenArm Minis for
  bi_openarm_follower) moved by an emulated hand; a scripted
  operator pauses, corrects twice (two episodes, intervention frames) and
  resumes;
- episodic: three episodes of at most 3 s with 1.5 s resets (the arm goes
  back to its starting pose); the operator ends the first early (right
  arrow) and discards the second (left arrow), which is then recorded again
  and, like the third, runs to its time limit.

Recording strategies write a LeRobot v3 dataset under .demo/datasets/.
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from rollout_ros.core.calibration import MotorCalibration, calibration_path, save_calibration
from rollout_ros.core.ros_domain import isolate
from rollout_ros.hardware.robots import get_robot_spec

ROBOT_TYPE = 'koch_follower'
ROBOT_ID = 'demo'
CAMERA = 'front'
IMAGE_HW = (96, 128)  # small enough that one ACT chunk inference fits a 33 ms tick on 2 cores
# Calibrated ranges of the emulated arm (full-turn joints span the encoder).
DEMO_RANGES = {
    'shoulder_pan': (0, 4095),
    'shoulder_lift': (1024, 3072),
    'elbow_flex': (1024, 3072),
    'wrist_flex': (1024, 3072),
    'wrist_roll': (0, 4095),
    'gripper': (2048, 3072),
}


# The emulator (module, preset) standing in for each robot's servo bus.
EMULATORS = {
    'dynamixel': ('rollout_ros.hardware.emulator.servo_bus_emulator', {'koch_follower': 'koch'}),
    'feetech': (
        'rollout_ros.hardware.emulator.feetech_emulator',
        {'so100_follower': 'so100', 'so101_follower': 'so101'},
    ),
}
# OpenArms on emulated Damiao motors (CAN): robot type -> arms (sides).
CAN_ROBOTS = {'openarm_follower': ('left',), 'bi_openarm_follower': ('left', 'right')}
# A pose inside both sides' joint limits [deg], from which the policy moves them.
OPENARM_START_DEG = {
    'left': (0.0, -10.0, 0.0, 30.0, 0.0, 0.0, 0.0, -20.0),
    'right': (0.0, 10.0, 0.0, 30.0, 0.0, 0.0, 0.0, -20.0),
}


def write_calibration(workdir: Path, robot_type: str = ROBOT_TYPE) -> Path:
    """The emulated arm's calibration as <workdir>/calibration/demo.json; returns that folder,
    LeRobot's --robot.calibration_dir."""
    spec = get_robot_spec(robot_type)
    # drive_mode on the elbow: exercises the inverted joints of Feetech arms.
    calib = {
        m.name: MotorCalibration(m.id, int(m.name == 'elbow_flex' and spec.bus == 'feetech'), 0, *DEMO_RANGES[m.name])
        for m in spec.motors
    }
    calib_dir = workdir / 'calibration'
    calib_path = calibration_path(calib_dir, spec.calibration_dir_name, ROBOT_ID)
    save_calibration(_private(calib_path), calib)
    os.replace(_private(calib_path), calib_path)
    return calib_dir


def _private(path: Path) -> Path:
    """A name beside `path` for this process to write before moving it in
    place: demos started together on one workdir never read a half-written file."""
    return path.with_name(f'.{os.getpid()}.{path.name}')


def initial_positions(robot_type: str = ROBOT_TYPE) -> list[int]:
    """The emulated arm's start pose: the middle of each calibrated range."""
    return [int((lo + hi) / 2) for lo, hi in (DEMO_RANGES[m.name] for m in get_robot_spec(robot_type).motors)]


def prepare(workdir: Path, robot_type: str = ROBOT_TYPE) -> dict:
    """Calibration, checkpoint and video for the demo (reused when present)."""
    if robot_type in CAN_ROBOTS:
        return prepare_openarm(workdir, robot_type)
    spec = get_robot_spec(robot_type)
    calib_dir = write_calibration(workdir, robot_type)

    ckpt = workdir / 'checkpoints' / 'tiny_act'
    if not (ckpt / 'config.json').is_file():
        from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

        make_tiny_act_checkpoint(_private(ckpt), spec.feature_names, {CAMERA: (3, *IMAGE_HW)})
        if ckpt.is_dir() and not (ckpt / 'config.json').is_file():
            shutil.rmtree(ckpt, ignore_errors=True)  # left half-written by an interrupted older demo
        try:
            os.rename(_private(ckpt), ckpt)
        except OSError:  # another demo's checkpoint got there first: the same one
            shutil.rmtree(_private(ckpt), ignore_errors=True)

    video = workdir / 'video' / 'demo.avi'
    if not video.is_file():
        from rollout_ros.hardware.emulator.pattern_video import write_pattern_video

        write_pattern_video(_private(video))
        os.replace(_private(video), video)
    return {
        'calibration_dir': calib_dir,
        'checkpoint': ckpt,
        'video': video,
        'initial': initial_positions(robot_type),
        'robot_type': robot_type,
    }


def prepare_openarm(workdir: Path, robot_type: str) -> dict:
    """The OpenArm demo's calibration (lerobot's file per arm), checkpoint and video."""
    import math

    from rollout_ros.hardware.damiao.calibration import lerobot_calibration

    spec = get_robot_spec(robot_type)
    calib_dir = workdir / 'calibration'
    sides = CAN_ROBOTS[robot_type]
    for side in sides:
        arm_id = f'{ROBOT_ID}_{side}' if spec.arms else ROBOT_ID
        save_calibration(
            calibration_path(calib_dir, 'openarm_follower', arm_id),
            lerobot_calibration(get_robot_spec('openarm_follower', side=side)),
        )
    ckpt = workdir / 'checkpoints' / f'tiny_act_{robot_type}'
    if not (ckpt / 'config.json').is_file():
        from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

        make_tiny_act_checkpoint(ckpt, spec.feature_names, {CAMERA: (3, *IMAGE_HW)})
    video = workdir / 'video' / 'demo.avi'
    if not video.is_file():
        from rollout_ros.hardware.emulator.pattern_video import write_pattern_video

        write_pattern_video(video)
    initial = [math.radians(d) for side in sides for d in OPENARM_START_DEG[side]]
    return {
        'calibration_dir': calib_dir,
        'checkpoint': ckpt,
        'video': video,
        'initial': initial,
        'robot_type': robot_type,
    }


def start_can_emulator(log_path: Path, initial: list[float], robot_type: str):
    """Emulated OpenArm(s) in their own process, on vcan devices if the kernel
    has them, else python-can udp_multicast; (process, interface, channels)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'rollout_ros.hardware.emulator.damiao_emulator',
            '--arms',
            str(len(CAN_ROBOTS[robot_type])),
            '--initial',
            ','.join(f'{q:.6f}' for q in initial),
        ],
        stdout=subprocess.PIPE,
        stderr=open(log_path, 'w'),
        text=True,
    )
    transport, ports = proc.stdout.readline().strip(), proc.stdout.readline().strip()
    if not (transport.startswith('TRANSPORT ') and ports.startswith('PORT ')):
        proc.kill()
        raise RuntimeError(f'CAN emulator did not start (see {log_path})')
    print(f'[demo] emulated CAN: {transport.split(" ", 1)[1]}', flush=True)
    return proc, transport.split()[1], ports.split(' ', 1)[1].split(',')


def start_emulator(log_path: Path, initial: list[int], robot_type: str = ROBOT_TYPE):
    module, presets = EMULATORS[get_robot_spec(robot_type).bus]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, '-m', module, '--preset', presets[robot_type], '--initial', ','.join(map(str, initial))],
        stdout=subprocess.PIPE,
        stderr=open(log_path, 'w'),
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith('PORT '):
        proc.kill()
        raise RuntimeError(f'servo bus emulator did not start (see {log_path})')
    return proc, line.split(' ', 1)[1]


def cameras_of(policy_path: str) -> dict[str, tuple[int, int]]:
    """The cameras a checkpoint (directory or Hub id) takes: name -> (height, width)."""
    from lerobot.configs import PreTrainedConfig
    from lerobot.utils.constants import OBS_IMAGES

    from rollout_ros.policy.loading import checkpoint_dir

    config = PreTrainedConfig.from_pretrained(checkpoint_dir(policy_path))
    return {
        key.removeprefix(f'{OBS_IMAGES}.'): tuple(feature.shape[-2:]) for key, feature in config.image_features.items()
    }


DEMO_KEYS = {
    # (seconds after the loop starts, key)
    'highlight': [(4.0, 's'), (6.0, 's'), (9.0, 's'), (11.0, 's')],
    'dagger': [(3.0, 'space'), (4.0, 'tab'), (6.5, 'tab'), (7.5, 'tab'), (10.0, 'tab'), (11.0, 'space')],
}
LEADER_ID = 'demo_leader'
# The emulated leader of each robot's dagger demo (Koch's otherwise).
DEMO_LEADERS = {'bi_openarm_follower': 'bi_openarm_mini'}
OPERATOR_TOPIC = 'demo_operator/events'  # in the demo's namespace


def prepare_leader(workdir: Path) -> dict[int, int]:
    """A Koch leader calibration (the follower's ranges) and its start pose."""
    from rollout_ros.hardware.leaders import get_leader_spec, leader_calibration_paths

    spec = get_leader_spec('koch_leader')
    follower = get_robot_spec(ROBOT_TYPE)
    calib = {m.name: MotorCalibration(m.id, 0, 0, *DEMO_RANGES[m.name]) for m in follower.motors}
    save_calibration(leader_calibration_paths(workdir / 'calibration', spec, LEADER_ID)[0], calib)
    # A little off the follower's pose: the follower has to come to the leader.
    return {m.id: int((lo + hi) / 2) + 120 for m, (lo, hi) in ((m, DEMO_RANGES[m.name]) for m in follower.motors)}


def recording_for(strategy: str, workdir: Path, robot_type: str = ROBOT_TYPE):
    from rollout_ros.recording_config import DatasetConfig, RecordingConfig, TeleopConfig

    if strategy == 'base':
        return None
    import time

    root = workdir / 'datasets' / f'{strategy}_{time.strftime("%Y%m%d_%H%M%S")}_{os.getpid()}'
    rec = RecordingConfig(
        dataset=DatasetConfig(repo_id=f'demo/rollout_{strategy}', root=str(root), push_to_hub=False),
        teleop=TeleopConfig(
            DEMO_LEADERS.get(robot_type, 'koch_leader') if strategy == 'dagger' else '',
            '',
            LEADER_ID,
            calibration_dir=str(workdir / 'calibration'),
        ),
        play_sounds=False,
        # 96x128 video at 30 fps: ~5 s episodes, so 15 s of sentry shows rotation.
        target_video_file_size_mb=0.03,
        ring_buffer_seconds=3.0,
        num_episodes=2,
        input_device='none',
        input_topics=[OPERATOR_TOPIC],
    )
    if strategy == 'episodic':
        rec.dataset.num_episodes, rec.dataset.episode_time_s, rec.dataset.reset_time_s = 3, 3.0, 1.5
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='rollout_demo', description=__doc__.splitlines()[0])
    p.add_argument('--workdir', default='.demo', help='where checkpoint, video and logs go')
    p.add_argument(
        '--duration',
        type=float,
        default=None,
        help='seconds; default 15 (episodic: until its episodes are done, at most 60)',
    )
    p.add_argument('--fps', type=float, default=30.0)
    p.add_argument('--policy_call', choices=('direct', 'service'), default='direct')
    p.add_argument(
        '--inference',
        choices=('sync', 'rtc'),
        default='sync',
        help='rtc: chunks come from a background thread; the loop never waits',
    )
    p.add_argument('--strategy', default='base', choices=('base', 'sentry', 'highlight', 'dagger', 'episodic'))
    p.add_argument(
        '--policy',
        default='',
        help='a checkpoint directory or Hub id to run instead of the tiny random ACT '
        '(its cameras are emulated at the sizes it was trained on)',
    )
    p.add_argument(
        '--robot',
        default=ROBOT_TYPE,
        choices=sorted([*(k for _, presets in EMULATORS.values() for k in presets), *CAN_ROBOTS]),
        help='which emulated arm',
    )
    p.add_argument(
        '--namespace',
        default='',
        help="ROS namespace of the demo's nodes; default demo_<pid>, so demos started together never drive each other",
    )
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 60.0 if args.strategy == 'episodic' else 15.0
    if args.strategy == 'dagger' and args.robot not in (ROBOT_TYPE, *DEMO_LEADERS):
        p.error(f'the dagger demo has emulated leaders for {sorted((ROBOT_TYPE, *DEMO_LEADERS))}: use one of them')

    workdir = Path(args.workdir).resolve()
    log_dir = workdir / 'logs'
    os.environ['ROS_LOG_DIR'] = str(log_dir)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    # Off a lab's robot domain unless one is chosen, and on this host only.
    domain = isolate(keep_domain=True)
    namespace = '/' + (args.namespace.strip('/') or f'demo_{os.getpid()}')
    print(
        f'[demo] ROS_DOMAIN_ID={domain} ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]}'
        f' namespace {namespace}',
        flush=True,
    )
    print(f'[demo] preparing {workdir} (calibration, tiny ACT checkpoint, video)', flush=True)
    assets = prepare(workdir, args.robot)
    if args.policy:
        try:
            cameras_of(args.policy)
        except Exception as e:  # noqa: BLE001 - the demo reports any failure in one line
            print(f'[demo] error: --policy {args.policy}: {e}', file=sys.stderr)
            return 1
    can, arm_ports = {}, {}
    run_tag = namespace.replace('/', '.')  # log names of this demo's emulators
    if args.robot in CAN_ROBOTS:
        emulator, interface, channels = start_can_emulator(
            log_dir / f'can_emulator{run_tag}.log', assets['initial'], args.robot
        )
        can = dict(can_interface=interface)
        port = channels[0]
        if len(channels) > 1:
            arm_ports = dict(zip(CAN_ROBOTS[args.robot], channels))
    else:
        emulator, port = start_emulator(log_dir / f'servo_bus_emulator{run_tag}.log', assets['initial'], args.robot)
    print(
        f'[demo] emulated {args.robot} on {", ".join(arm_ports.values()) or port}; running a {args.strategy} '
        f'rollout for {args.duration:g} s at {args.fps:g} Hz',
        flush=True,
    )

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from rollout_ros.cli import CameraConfig, RolloutConfig, format_summary, run
    from rollout_ros.nodes.spin import install_stop_signals

    policy_path = args.policy or str(assets['checkpoint'])
    cfg = RolloutConfig(
        policy_path=policy_path,
        robot_type=args.robot,
        robot_port=port,
        arm_ports=arm_ports,
        robot_side='left' if args.robot == 'openarm_follower' else '',
        robot_id=ROBOT_ID,
        **can,
        calibration_dir=str(assets['calibration_dir']),
        cameras=[
            CameraConfig(name, str(assets['video']), w, h, args.fps) for name, (h, w) in cameras_of(policy_path).items()
        ],
        fps=args.fps,
        duration=args.duration,
        task='demo',
        policy_call=args.policy_call,
        inference_type=args.inference,
        # One intra-op thread: on 2 cores shared with the loop, camera and bus,
        # a second torch worker woken from idle each chunk costs more than it gives.
        torch_threads=1,
        strategy=args.strategy,
        recording=recording_for(args.strategy, workdir, args.robot),
        namespace=namespace,
    )
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    install_stop_signals(stop)
    with contextlib.ExitStack() as stack:
        if args.strategy == 'dagger' and args.robot in DEMO_LEADERS:
            ports = stack.enter_context(emulated_openarm_minis(workdir))
            cfg.recording.teleop.left_port, cfg.recording.teleop.right_port = ports['left'], ports['right']
        elif args.strategy == 'dagger':
            cfg.recording.teleop.port = stack.enter_context(emulated_leader(workdir))
        try:
            operator = (
                episodic_operator()
                if args.strategy == 'episodic'
                else scripted_operator(DEMO_KEYS.get(args.strategy, []))
            )
            summary = run(cfg, stop, on_started=operator)
        except Exception as e:  # noqa: BLE001 - the demo reports any failure in one line
            print(f'[demo] error: {e}', file=sys.stderr)
            return 1
        finally:
            rclpy.try_shutdown()
            emulator.terminate()
            emulator.wait(timeout=5)
    (workdir / 'summary.json').write_text(json.dumps(summary))
    print(format_summary(summary, str(log_dir)))
    return 0


@contextlib.contextmanager
def emulated_leader(workdir: Path):
    """An emulated Koch leader on a pty, moved by an emulated hand; yields its port."""
    from rollout_ros.hardware.emulator.human import EmulatedHuman, sinusoid
    from rollout_ros.hardware.emulator.servo_bus_emulator import KOCH_IDS, ServoBusEmulator

    initial = prepare_leader(workdir)
    with ServoBusEmulator({i: 'xl330-m077' for i in KOCH_IDS}, tau=0.02, initial_positions=initial) as emu:
        with EmulatedHuman(emu, sinusoid(KOCH_IDS, amplitude=120, period_s=3.0)):
            yield emu.port


@contextlib.contextmanager
def emulated_openarm_minis(workdir: Path):
    """Two emulated OpenArm Minis (Feetech, on ptys) moved by emulated hands,
    with lerobot-style calibrations; yields their ports by side."""
    from rollout_ros.core.calibration import MotorCalibration
    from rollout_ros.hardware.emulator.feetech_emulator import FeetechBusEmulator
    from rollout_ros.hardware.emulator.human import EmulatedHuman, sinusoid
    from rollout_ros.hardware.leaders import get_leader_spec, leader_calibration_paths

    ids = list(range(1, 9))
    # Full-turn joints around the middle; the gripper's closed-to-open range.
    calib = {f'joint_{i}': MotorCalibration(i, 0, 0, 0, 4095) for i in range(1, 8)}
    calib['gripper'] = MotorCalibration(8, 0, 0, 2048, 3072)
    for side in ('left', 'right'):
        arm = get_leader_spec('openarm_mini', side=side)
        save_calibration(leader_calibration_paths(workdir / 'calibration', arm, f'{LEADER_ID}_{side}')[0], calib)
    initial = {i: 2048 + 60 for i in ids[:-1]} | {8: 2300}
    with contextlib.ExitStack() as stack:
        ports = {}
        for side in ('left', 'right'):
            emu = stack.enter_context(
                FeetechBusEmulator({i: 'sts3215' for i in ids}, tau=0.02, initial_positions=initial)
            )
            stack.enter_context(EmulatedHuman(emu, sinusoid(ids, amplitude=60, period_s=3.0)))
            ports[side] = emu.port
        yield ports


def episodic_operator():
    """on_started hook: an operator who ends episode 1 early and discards the first take of episode 2."""
    from rollout_ros.core.episodic_phases import RECORDING
    from rollout_ros.nodes.scripted_input import ReactiveInput

    def start(rollout):
        p = rollout.strategy.phases

        def recording(episode):
            return lambda: p.phase == RECORDING and p.started and p.episode == episode

        operator = ReactiveInput(
            rollout.strategy, OPERATOR_TOPIC, [(recording(1), 1.0, 'right'), (recording(2), 1.0, 'left')]
        )
        operator.start()
        return operator.stop

    return start


def scripted_operator(presses: list[tuple[float, str]]):
    """on_started hook: an operator pressing keys once the loop runs."""
    from rollout_ros.nodes.scripted_input import ScriptedInput

    def start(rollout):
        operator = ScriptedInput(rollout.strategy, OPERATOR_TOPIC, presses)
        operator.start()
        return operator.stop

    return start if presses else None


if __name__ == '__main__':
    sys.exit(main())

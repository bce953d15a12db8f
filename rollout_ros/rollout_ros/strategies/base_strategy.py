# SPDX-License-Identifier: Apache-2.0
"""Base strategy: run the policy on the robot for `duration` seconds (0 = until
stopped), recording nothing.

A lifecycle node that supervises the others: on configure it configures
`managed_nodes` in order (policy first, hardware last, so a bad checkpoint
fails before any servo is touched), on activate it activates them in order
and starts the control loop on its own thread, and on deactivate / cleanup /
shutdown it walks them back in reverse.

Liveness: a run stops with one error naming the node and the topic or
service when `max_starved_ticks` pass without a fresh action, when a managed
node leaves the active state or the ROS graph; the loop stops commanding
(the driver's watchdog holds, then the driver is deactivated first: hold,
torque as configured) and the process exits non-zero. While stopping, a node
that does not answer its get_state within `stop_timeout_s` is skipped
instead of waited on for transition_timeout_s.
"""

import json
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import TransitionEvent
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from rollout_ros.core.control_loop import ControlLoop
from rollout_ros.core.errors import ConfigError
from rollout_ros.core.features import FeatureMapper
from rollout_ros.core.limits import LIMITS
from rollout_ros.nodes.chunk_consumer import ChunkConsumer
from rollout_ros.nodes.lifecycle_client import LifecycleClient, call_blocking
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.policy_node import image_from_msg, image_ref
from rollout_ros.nodes.robot_driver_node import COMMAND_QOS
from rollout_ros.nodes.robot_params import declare_robot_params, load_robot
from rollout_ros.nodes.spin import LinkNode, run_node
from rollout_ros.nodes.status import diagnostics, status_line
from rollout_ros_interfaces.msg import RolloutStatus
from rollout_ros_interfaces.srv import InferAction

SOLE_SERVER_GRACE_S = 3.0


def keep_positions(store: dict):
    """JointState callback keeping {joint: (position, stamp)}; several publishers
    (one driver per arm) may each fill in their part."""

    def on_msg(msg: JointState) -> None:
        for name, pos in zip(msg.name, msg.position):
            store[name] = (pos, msg.header.stamp)

    return on_msg


class BaseStrategyNode(ManagedNode):
    strategy_type = 'base'

    def __init__(self, node_name: str = 'base_strategy', **kwargs):
        super().__init__(node_name, **kwargs)
        declare_robot_params(self)
        self.declare('fps', 30.0, 'Control-loop and policy rate [Hz].', **LIMITS['fps'].kwargs())
        self.declare('duration', 0.0, 'Run time [s]; 0 = until stopped.', **LIMITS['duration'].kwargs())
        self.declare(
            'interpolation_multiplier',
            1,
            'Commands per policy action: the loop sends fps * N commands, linear steps '
            'towards each action; the policy still runs at fps.',
            **LIMITS['interpolation_multiplier'].kwargs(),
        )
        self.declare('task', '', 'Language instruction given to the policy.', read_only=False)
        self.declare(
            'loop_realtime_priority',
            10,
            'SCHED_FIFO priority of the control-loop thread where the OS permits it '
            '(CAP_SYS_NICE or an rtprio limit), so other threads of a busy machine do not make '
            'commands late; 0 = normal scheduling.',
            min_value=0,
            max_value=99,
        )
        self.declare('camera_names', ['front'], 'Cameras fed to the policy (observation.images.<name>).')
        self.declare(
            'camera_topic_template',
            'camera_{name}/image_raw',
            'Image topic per camera; {name} is replaced by the camera name (relative names are in '
            "this node's namespace).",
        )
        self.declare('policy_service', 'policy/infer', 'InferAction service of the policy node.')
        self.declare(
            'policy_transport',
            'service',
            'How a policy node in another process is reached (in-process composition ignores '
            'it). service: one policy_service call per tick (policy inference_type sync); '
            'topic: observations to <policy>/observation, action chunks from '
            '<policy>/action_chunk, queued here (policy inference_type rtc); <policy> is '
            'policy_service without its last name.',
        )
        self.declare(
            'policy_timeout_s',
            1.0,
            'A policy call slower than this is abandoned and the tick counted starved [s].',
            min_value=0.001,
        )
        self.declare(
            'max_frame_age_s',
            0.5,
            'Observations with an older camera frame or joint state are not fed to the policy (starved tick) [s].',
            min_value=0.001,
        )
        self.declare(
            'display_data',
            False,
            'Stream observations and actions to a Rerun viewer (lerobot '
            '--display_data), off the control loop: the display drops ticks, the robot never waits.',
        )
        self.declare('display_ip', '', "Rerun viewer host to stream to; '' = spawn a local viewer.")
        self.declare('display_port', 9876, 'Rerun viewer port.', **LIMITS['display_port'].kwargs())
        self.declare('display_rrd_path', '', 'Write the Rerun stream to this .rrd file instead of a viewer.')
        self.declare(
            'managed_nodes',
            ['policy', 'camera_front', 'robot_driver'],
            'Lifecycle nodes this strategy brings up, in order (torn down in reverse); relative '
            "names are in this node's namespace. A node whose lifecycle services more than one "
            'node serves (another run under the same names) is refused before anything moves.',
        )
        self.declare(
            'transition_timeout_s',
            120.0,
            'How long one managed node may take for a transition (loading a policy) [s].',
            min_value=0.1,
        )
        self.declare(
            'autostart',
            True,
            'Run as its own process: configure and activate at start. false: wait unconfigured '
            'for a lifecycle manager (ros2 lifecycle set, nav2 lifecycle_manager); configure '
            'then brings up managed_nodes in order, skipping those already configured.',
        )
        self.declare(
            'max_starved_ticks',
            15,
            'Policy ticks without a fresh action (stale joint states or frames, no action from '
            'the policy in time) after which the run stops with an error naming the missing '
            'input, the arm held; once the policy has acted, also a starved stretch of this many '
            'periods (at least two policy_timeout_s with a policy in another process).',
            **LIMITS['max_starved_ticks'].kwargs(),
        )
        self.declare(
            'stop_timeout_s',
            2.0,
            'While stopping, a managed node that does not answer get_state within this time is '
            'taken for gone and skipped [s].',
            min_value=0.05,
            max_value=60.0,
        )
        self.declare(
            'startup_timeout_s',
            10.0,
            'How long to wait for the first joint state and frames after activation, and for the '
            "policy's first action once the loop runs (max_starved_ticks counts from then) [s].",
            min_value=0.1,
        )
        self.declare(
            'status_log_period_s',
            5.0,
            'Log the one-line status (ticks, rate, episode, buffer) at INFO this often, for '
            'terminals of ros2 launch; 0 = never (the rollout CLI shows it in place) [s].',
            read_only=False,
            min_value=0.0,
            max_value=3600.0,
        )
        self.local_policy = None  # set when composed in one process with the policy node
        self._chunks = None  # ChunkConsumer (policy_transport topic), used as local_policy
        self.local_nodes: dict = {}  # name -> node, to report their errors in-process
        # Injectable feature-space processors (Python API): robot state features
        # -> what the policy and the dataset see; policy action -> robot action.
        self.observation_processor = None
        self.action_processor = None
        self.finished = threading.Event()
        self.loop: ControlLoop | None = None
        self.display = None
        self.summary: dict = {}
        self.action_log_len = 0
        self._managed: dict[str, LifecycleClient] = {}
        self._managed_states: dict[str, str] = {}
        self._subs = []
        self._joints: dict[str, tuple[float, object]] = {}  # name -> (radians, stamp)
        self._images: dict[str, Image] = {}
        self._echoes: dict[str, threading.Event] = {}  # managed driver -> executed a command
        self._timing_clients: dict[str, object] = {}  # managed driver -> its ~/command_timing
        # Drivers composed in this process: the loop reads their joints right
        # before each observation and hands them each command directly, on its
        # own thread (joint_states and joint_commands still carry both).
        self._direct_drivers: list = []
        self._keep_joints = keep_positions(self._joints)
        self._thread = None
        self._status_timer = None
        self._cmd_pub = self._status_pub = self._diag_pub = None
        self.status_text = ''  # one-line status for a terminal
        self.last_command_stamp = None
        self._infer_client = None
        self.starve_reason = ''  # why the latest tick had no fresh action
        self._gone: set[str] = set()  # managed nodes that stopped answering
        self._io_group = ReentrantCallbackGroup()
        # Service calls to the managed nodes (lifecycle, policy) and every
        # subscription go through a link node on its own single-threaded
        # executor: a transition of this node, run inside whatever executor
        # spins it (an external lifecycle manager's request), can then wait for
        # replies and first data without a deadlock, and this node itself can
        # live on a single-threaded executor
        # (rclpy's multi-threaded one spins in Python and cost the loop half
        # its rate when the nodes ran as separate processes on 2 cores).
        self._link_owner = LinkNode(self, 'strategy-link')
        self._link = self._link_owner.node

    # Managed nodes ----------------------------------------------------------
    def node_path(self, name: str) -> str:
        """Absolute name of a node given absolute or relative to this node's namespace."""
        name = name.strip().rstrip('/')
        return name if name.startswith('/') else f'{self.get_namespace().rstrip("/")}/{name}'

    def _check_sole_server(self, name: str, client: LifecycleClient) -> None:
        """Two runs under the same names would drive each other's nodes: refuse
        before the first transition."""
        service = self._link.resolve_service_name(f'{client.target}/change_state')
        # The graph forgets a node that just went away a moment late: a second
        # server must still be there after a short grace to count.
        deadline = time.monotonic() + SOLE_SERVER_GRACE_S
        while (servers := self._link.count_services(service)) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        if servers > 1:
            raise ConfigError(
                'managed_nodes',
                f'{servers} nodes serve {service}: another run uses the same '
                f'node names, and this strategy would drive its {name} too.',
                'give each run its own namespace (rollout --namespace=<robot>, ros2 launch ... '
                'namespace:=<robot>), or stop the other run.',
            )

    def _node_error(self, name: str) -> str:
        node = self.local_nodes.get(name.strip('/'))
        if node is not None and getattr(node, 'last_error', ''):
            return node.last_error
        return f'see the log of node {name}'

    def _transition_all(self, transition: str, names, strict: bool) -> None:
        timeout = self.param('transition_timeout_s')
        goal = {
            'configure': 'inactive',
            'activate': 'active',
            'deactivate': 'inactive',
            'cleanup': 'unconfigured',
            'shutdown': 'finalized',
        }[transition]
        for name in names:
            # An external lifecycle manager may have brought a node up already.
            if (
                transition == 'configure'
                and self._managed_states.get(name) in ('inactive', 'active')
                or transition == 'activate'
                and self._managed_states.get(name) == 'active'
            ):
                continue
            client = self._managed[name]
            if not strict and not self._answers(name):
                continue
            ok = client.change(transition, timeout)
            if ok:
                self._managed_states[name] = goal
            elif strict:
                raise ConfigError(f'{name}', f'failed to {transition}: {self._node_error(name)}')
            else:
                message = f'{name} failed to {transition}: {self._node_error(name)}'
                self.get_logger().error(message)
                if not self.last_error:
                    self.last_error = message  # a stop that left torque on is not a clean exit

    def _answers(self, name: str) -> bool:
        """While stopping: is `name` still there? A dead process would hold each
        of its transitions for transition_timeout_s."""
        if name not in self._gone and self._managed[name].state(self.param('stop_timeout_s')) == 'unknown':
            self._gone.add(name)
            self.get_logger().error(f'{name} does not answer get_state (process gone?): skipped while stopping')
        return name not in self._gone

    def _walk_back(self, target: str) -> None:
        """Bring every managed node back to `target` (inactive/unconfigured/finalized), in reverse."""
        order = list(reversed(list(self._managed)))
        if target in ('inactive', 'unconfigured', 'finalized'):
            self._transition_all('deactivate', [n for n in order if self._managed_states.get(n) == 'active'], False)
        if target in ('unconfigured', 'finalized'):
            self._transition_all('cleanup', [n for n in order if self._managed_states.get(n) == 'inactive'], False)
        if target == 'finalized':
            self._transition_all('shutdown', [n for n in order if self._managed_states.get(n) == 'unconfigured'], False)

    # Transitions ------------------------------------------------------------
    def configure(self) -> None:
        spec, calibration = load_robot(self)
        self.mapper = FeatureMapper(spec.joint_maps(calibration), self.param('joint_prefix'))
        self.camera_names = list(self.param('camera_names'))
        template = self.param('camera_topic_template')
        if len(self.camera_names) > 1 and '{name}' not in template:
            raise ConfigError(
                'camera_topic_template',
                f'{template!r} lacks {{name}}, so all {len(self.camera_names)} cameras would read one topic.',
                'e.g. /camera_{name}/image_raw.',
            )
        self._cmd_pub = self.create_lifecycle_publisher(JointState, 'joint_commands', COMMAND_QOS)
        self._status_pub = self.create_lifecycle_publisher(RolloutStatus, '~/status', 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._subs.append(
            self._link.create_subscription(
                JointState, 'joint_states', keep_positions(self._joints), 10, callback_group=self._io_group
            )
        )
        for cam in self.camera_names:
            self._subs.append(
                self._link.create_subscription(
                    Image,
                    template.format(name=cam),
                    lambda m, c=cam: self._images.__setitem__(c, m),
                    qos_profile_sensor_data,
                    callback_group=self._io_group,
                )
            )
        transport = self.param('policy_transport')
        if transport not in ('service', 'topic'):
            raise ConfigError('policy_transport', f'{transport!r} is not a transport.', "use 'service' or 'topic'.")
        if self.local_policy is None and transport == 'topic':
            self._chunks = self.local_policy = ChunkConsumer(
                self._link, self.param('policy_service').rsplit('/', 1)[0], self._io_group
            )
        elif self.local_policy is None:
            self._infer_client = self._link.create_client(InferAction, self.param('policy_service'))
        timeout = self.param('transition_timeout_s')
        for name in self.param('managed_nodes'):
            client = LifecycleClient(self._link, self.node_path(name))
            self._managed[name] = client
            self._subs.append(
                self._link.create_subscription(
                    TransitionEvent,
                    f'{client.target}/transition_event',
                    lambda msg, n=name: self._on_managed_transition(n, msg),
                    10,
                    callback_group=self._io_group,
                )
            )
            if 'robot_driver' in name:
                seen = self._echoes.setdefault(name, threading.Event())
                self._subs.append(
                    self._link.create_subscription(
                        JointState,
                        f'{client.target}/executed_commands',
                        lambda _m, e=seen: e.set(),
                        10,
                        callback_group=self._io_group,
                    )
                )
                self._timing_clients[name] = self._link.create_client(
                    Trigger, f'{client.target}/command_timing', callback_group=self._io_group
                )
                driver = self.local_nodes.get(name.strip('/'))
                if driver is not None and hasattr(driver, 'execute'):
                    driver.direct_commander = True
                    self._direct_drivers.append(driver)
            self._gone.discard(name)
            if not client.wait_ready(timeout):
                raise ConfigError(
                    'managed_nodes',
                    f'node {name!r} offers no lifecycle services.',
                    'start it (launch file / rollout CLI) or remove it from managed_nodes.',
                )
            self._check_sole_server(name, client)
            self._managed_states[name] = client.state()
        # Drivers last, after every check that can refuse the run: nothing is
        # written to a servo (calibration) for a run that cannot start.
        names = list(self._managed)
        drivers = [n for n in names if 'robot_driver' in n]
        try:
            self._transition_all('configure', [n for n in names if n not in drivers], strict=True)
            self._check_cameras_fit_policy()
            self._transition_all('configure', drivers, strict=True)
        except ConfigError:
            self._walk_back('unconfigured')
            raise

    def _check_cameras_fit_policy(self) -> None:
        """Composed in one process: each camera's image size (its frames are
        resized to it) against the size the policy takes, now rather than at
        the first tick with torque on."""
        policy = next((n for n in self.local_nodes.values() if hasattr(n, 'expected_images')), None)
        for cam, (h, w) in (getattr(policy, 'expected_images', None) or {}).items():
            camera = self.local_nodes.get(f'camera_{cam}')
            if camera is None:
                continue
            got = (camera.param('height'), camera.param('width'))
            if got != (h, w):
                raise ConfigError(
                    f'camera_{cam}',
                    f'gives {got[1]}x{got[0]} images; the policy takes {w}x{h}.',
                    f'set width {w} and height {h} for camera {cam!r} (--robot.cameras '
                    f'"{{{cam}: {{width: {w}, height: {h}}}}}" or camera_width/camera_height).',
                )

    def activate(self) -> None:
        self.summary = {}
        # Data from before a deactivate must not pass for fresh inputs.
        self._joints.clear()
        self._images.clear()
        for seen in self._echoes.values():
            seen.clear()
        if self._chunks is not None:
            self._chunks.reset()  # nor actions queued before it
        try:
            self._transition_all('activate', list(self._managed), strict=True)
            self._wait_for_inputs()
        except ConfigError:
            self._walk_back('inactive')
            raise
        self.finished.clear()
        self.loop = ControlLoop(
            self.param('fps'),
            self._observe,
            self._policy,
            self._command,
            self.param('duration'),
            self.action_log_len,
            self.param('interpolation_multiplier'),
            max_starved_ticks=self.param('max_starved_ticks'),
            max_starved_s=self._max_starved_s(),
            realtime_priority=self.param('loop_realtime_priority'),
            startup_grace_s=self.param('startup_timeout_s'),
        )
        self.loop.record = self.on_policy_tick
        self._open_display()
        self._bus_timing()  # the drivers' write log starts with the loop
        self._thread = threading.Thread(target=self._run_loop, name='control-loop', daemon=True)
        self._thread.start()
        self._status_timer = self.create_timer(
            1.0, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup()
        )

    def deactivate(self) -> None:
        self._stop_loop()
        self._walk_back('inactive')

    def cleanup(self) -> None:
        # Shutting down (from any state) finalizes the managed nodes too.
        self._walk_back('finalized' if self.finalizing else 'unconfigured')
        for client in self._managed.values():
            client.destroy()
        self._managed.clear()
        self._managed_states.clear()
        self._echoes.clear()
        for driver in self._direct_drivers:
            driver.direct_commander = False
        self._direct_drivers.clear()
        for timing_client in self._timing_clients.values():
            self._link.destroy_client(timing_client)
        self._timing_clients.clear()
        for sub in self._subs:
            self._link.destroy_subscription(sub)
        self._subs.clear()
        for pub in (self._cmd_pub, self._status_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._cmd_pub = self._status_pub = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        if self._infer_client is not None:
            self._link.destroy_client(self._infer_client)
            self._infer_client = None
        if self._chunks is not None:
            self._chunks.destroy()
            self._chunks = self.local_policy = None

    def _stop_loop(self) -> None:
        if self.loop is not None:
            self.loop.stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._status_timer is not None:
            self.destroy_timer(self._status_timer)
            self._status_timer = None
        if self.display is not None:
            self.display.close()
            self.get_logger().info(f'display: {self.display.logged} ticks shown, {self.display.dropped} dropped')
            self.display = None
        if self.loop is not None and self.loop.pacer.started and not self.summary:
            self.summary = {
                **self.loop.summary(),
                **self._inference_figures(),
                **self._bus_timing(),
                'strategy': self.strategy_type,
                **self.summary_extras(),
            }
            if self.summary_complete_at_stop:
                self.report_summary()

    # A recording strategy's counts are final only once its last episode is saved.
    summary_complete_at_stop = True

    def report_summary(self) -> None:
        """The final status message, the 'run summary' log line and, when policy calls made ticks
        overrun, what to do about it."""
        self._publish_status(final=True)
        self.get_logger().info('run summary: ' + json.dumps(self.summary))
        period_ms = 1e3 / self.param('fps')
        if (
            self.summary.get('infer_measures') == 'policy_call'
            and self.summary['overruns']
            and self.summary['infer_p99_ms'] > period_ms
        ):
            self.get_logger().warning(
                f'{self.summary["overruns"]} ticks overran: policy calls took up to '
                f'{self.summary["infer_p99_ms"]:.0f} ms (p99) against a {period_ms:.0f} ms tick. For a '
                'chunking policy, --inference.type=rtc computes chunks in the background so the arm '
                'never waits for one.'
            )

    def _inference_figures(self) -> dict:
        """What infer_* measured: the policy call itself (sync), or, with a
        chunking backend, only taking the next action from the queue while
        chunks are computed in the background (their latency as chunk_infer_*)."""
        chunker = getattr(self.local_policy, 'chunker', None)
        if chunker is None:
            return {'infer_measures': 'policy_call'}
        figures = {'infer_measures': 'queue_pop'}
        stats = chunker.stats()
        if 'chunk_latency_p50_ms' in stats:
            figures.update(
                chunk_infer_p50_ms=stats['chunk_latency_p50_ms'], chunk_infer_p99_ms=stats['chunk_latency_p99_ms']
            )
        return figures

    def _bus_timing(self) -> dict:
        """The drivers' figures of the commands they wrote to the bus since the
        previous call (which starts a new window), as `bus_*` summary keys:
        what the robot felt, next to the loop's own figures. With several
        drivers (one per arm) the worst arm's figure is kept."""
        period = 1.0 / (self.param('fps') * self.param('interpolation_multiplier'))
        figures = []
        for name, client in self._timing_clients.items():
            node = self.local_nodes.get(name.strip('/'))
            if node is not None and hasattr(node, 'command_timing'):
                figures.append(node.command_timing(reset=True, period_s=period))
                continue
            resp = call_blocking(client, Trigger.Request(), 0.5) if client.service_is_ready() else None
            if resp is not None and resp.success:
                figures.append(json.loads(resp.message))
        if not figures:
            return {}
        worst = {
            'rate_hz': min,
            'commands': min,
            'first_write_s': min,
            'last_write_s': max,
            'holds': sum,
            'hold_times_s': lambda lists: sorted(t for times in lists for t in times),
        }
        keys = dict.fromkeys(k for f in figures for k in f)
        return {f'bus_{k}': worst.get(k, max)(f[k] for f in figures if k in f) for k in keys}

    # Loop -------------------------------------------------------------------
    def _wait_for_inputs(self) -> None:
        deadline = time.monotonic() + self.param('startup_timeout_s')
        while time.monotonic() < deadline:
            missing = self._missing_inputs()
            if not missing:
                self._handshake_drivers(deadline)
                return self._wait_for_first_chunk(deadline)
            time.sleep(0.02)
        raise ConfigError(
            'startup_timeout_s',
            f'no data within the timeout on {missing}.',
            'check the driver and camera topics (remappings, camera_topic_template).',
        )

    def _handshake_drivers(self, deadline: float) -> None:
        """Send the present pose until every managed driver has executed one.

        A subscription can be visible in the graph before it takes samples
        from this publisher, and the first commands of the loop would then be
        lost. Holding the present pose moves nothing."""
        pending = set(self._echoes)
        while pending and time.monotonic() < deadline:
            names = self.mapper.ros_joint_names
            msg = JointState(name=names, position=[self._joints[n][0] for n in names])
            for driver in self._direct_drivers:
                driver.execute(msg)
            self._cmd_pub.publish(msg)
            time.sleep(0.02)
            pending = {d for d, seen in self._echoes.items() if not seen.is_set()}
        if pending:
            raise ConfigError(
                'managed_nodes',
                f'drivers {sorted(pending)} executed no command.',
                'check the joint_commands remapping of those drivers.',
            )

    def _wait_for_first_chunk(self, deadline: float) -> None:
        """With a chunking backend, start the loop once the first chunk is there,
        so the run does not open with starved ticks while the robot stands."""
        policy = self.local_policy
        if policy is None or policy.chunk_ready():
            return
        while time.monotonic() < deadline:
            obs = self._observe()
            if obs is not None:
                state, images, _ = obs
                policy.submit_observation(state, images, self.param('task'))
            if policy.chunk_ready():
                return
            time.sleep(0.02)
        raise ConfigError(
            'startup_timeout_s',
            'the policy produced no first action chunk in time.',
            'raise startup_timeout_s for a slow policy, or check the policy log.',
        )

    def _missing_inputs(self) -> list[str]:
        missing = [] if all(n in self._joints for n in self.mapper.ros_joint_names) else ['joint_states']
        if self._cmd_pub.get_subscription_count() == 0:
            missing.append(f'a subscriber on {self._cmd_pub.topic_name}')
        return missing + [
            self.param('camera_topic_template').format(name=c) for c in self.camera_names if c not in self._images
        ]

    def _on_managed_transition(self, name: str, msg: TransitionEvent) -> None:
        """A managed node leaving `active` on its own (a driver whose bus died,
        a node someone deactivated) ends the run: the loop must not keep
        commanding a robot whose pieces are gone."""
        label = msg.goal_state.label
        if label not in ('unconfigured', 'inactive', 'active', 'finalized'):
            return  # intermediate states; the event that ends the transition follows
        was = self._managed_states.get(name)
        self._managed_states[name] = label
        if was != 'active' or label == 'active' or self.loop is None or self.loop.stop_event.is_set():
            return
        self._fail_run(f'{name} left the active state ({label}): {self._node_error(name)}')

    def _max_starved_s(self) -> float:
        """The streak of starved time that ends a run: max_starved_ticks periods,
        but never less than two policy calls timing out back to back (one slow
        call on a loaded machine must not end a run; a dead policy does)."""
        budget = self.param('max_starved_ticks') / self.param('fps')
        if self.local_policy is None or self._chunks is not None:
            budget = max(budget, 2.0 * self.param('policy_timeout_s'))
        return budget

    def _fail_run(self, message: str) -> None:
        """One error for the run, then stop it (the first fault is the one reported)."""
        if self.loop is None or self.loop.stop_event.is_set():
            return
        if not self.last_error:
            self.last_error = message
            self.get_logger().error(message)
        self.loop.stop()

    def _check_graph(self) -> None:
        """A managed node that left the ROS graph (its process ended) ends the run."""
        if self.loop is None or self.loop.stop_event.is_set():
            return
        present = {f'{ns.rstrip("/")}/{n}' for n, ns in self._link.get_node_names_and_namespaces()}
        for name, client in self._managed.items():
            if self._managed_states.get(name) == 'active' and client.target not in present:
                self._gone.add(name)
                self._fail_run(f'{name} left the ROS graph (its process ended?) during the run')
                return

    def fresh_positions(self, store: dict, names: list[str]) -> list[float] | None:
        """Positions of `names` from a keep_positions store, or None when one is
        missing or older than max_frame_age_s."""
        max_age = self.param('max_frame_age_s')
        if any(n not in store or self._age_s(store[n][1]) > max_age for n in names):
            return None
        return [store[n][0] for n in names]

    def _open_display(self) -> None:
        if not self.param('display_data'):
            return
        try:
            from rollout_ros.display import RerunDisplay

            self.display = RerunDisplay(
                self.param('display_ip'), self.param('display_port'), self.param('display_rrd_path')
            )
        except Exception as e:  # noqa: BLE001 - a display must not stop the robot
            self.get_logger().error(f'display_data: no Rerun stream ({type(e).__name__}: {e}); running without')

    def on_policy_tick(self, obs, action) -> None:
        """Once per policy step, on the loop thread, after the command went out."""
        if self.display is not None:
            state, images, stamp = obs
            self.display.submit(
                Time.from_msg(stamp).nanoseconds * 1e-9,
                state,
                action,
                {c: (lambda m=m: image_from_msg(m)) for c, m in images.items()},
            )

    def _run_loop(self) -> None:
        try:
            self.loop.run()
            if self.loop.starved_out and not self.last_error:
                self.last_error = (
                    f'no fresh action for {self.loop.consecutive_starved} policy ticks '
                    f'(max_starved_ticks={self.loop.max_starved_ticks}): '
                    f'{self.starve_reason or "the strategy produced none"}; '
                    'stopping the run, the arm holds'
                )
                self.get_logger().error(self.last_error)
        except Exception as e:  # noqa: BLE001 - reported, then the node is stopped by its owner
            self.last_error = self.last_error or f'control loop: {type(e).__name__}: {e}'
            self.get_logger().error(self.last_error)
        finally:
            self.finished.set()

    def _age_s(self, stamp) -> float:
        return (self.get_clock().now() - Time.from_msg(stamp)).nanoseconds * 1e-9

    def _observe(self):
        max_age = self.param('max_frame_age_s')
        joints = self._joints
        for driver in self._direct_drivers:
            msg = driver.read_state()
            if msg is not None:
                self._keep_joints(msg)
        names = self.mapper.ros_joint_names
        self.starve_reason = ''
        positions = self.fresh_positions(joints, names)
        if positions is None:
            drivers = [n for n in self._managed if 'robot_driver' in n] or ['the robot driver']
            self.starve_reason = (
                f'no fresh joint_states from {", ".join(drivers)} (none newer than max_frame_age_s={max_age} s)'
            )
            return None
        images = {}
        for cam in self.camera_names:
            img = self._images.get(cam)
            if img is None or self._age_s(img.header.stamp) > max_age:
                topic = self.param('camera_topic_template').format(name=cam)
                self.starve_reason = (
                    f'no fresh frame on {topic} (node camera_{cam}; none newer than max_frame_age_s={max_age} s)'
                )
                return None
            images[cam] = img
        state = self.mapper.observation_state(names, positions)
        if self.observation_processor is not None:
            state = self.observation_processor(state)
        return state, images, min((joints[n][1] for n in names), key=lambda t: (t.sec, t.nanosec))

    def _policy(self, obs):
        state, images, stamp = obs
        task = self.param('task')
        policy_node = self.param('policy_service').rsplit('/', 1)[0] or '/policy'
        if self.local_policy is not None:
            action = self.local_policy.infer(state, images, task)
            if action is None:
                self.starve_reason = (
                    f'no action chunk from {policy_node} on {policy_node}/action_chunk'
                    if self._chunks is not None
                    else f'policy {policy_node} returned no action'
                )
            return action
        req = InferAction.Request()
        req.stamp = stamp
        req.state_names = list(state)
        req.state = [float(v) for v in state.values()]
        # Stamps only: the policy node takes the frames from its own camera
        # subscriptions instead of a second copy of each through the service.
        req.images = [image_ref(m, c) for c, m in images.items()]
        req.task = task
        resp = call_blocking(self._infer_client, req, self.param('policy_timeout_s'))
        if resp is None or not resp.success:
            service = self.param('policy_service')
            if resp is not None:
                self.get_logger().error(f'policy call failed: {resp.message}', throttle_duration_sec=2.0)
                self.starve_reason = f'policy service {service} (node {policy_node}) failed: {resp.message}'
            else:
                self.starve_reason = (
                    f'policy service {service} (node {policy_node}) gave no reply within '
                    f'policy_timeout_s={self.param("policy_timeout_s")} s'
                )
            return None
        return dict(zip(resp.action_names, resp.action))

    def _command(self, action) -> None:
        if self.action_processor is not None:
            action = self.action_processor(action)
        names, positions = self.mapper.joint_command(action)
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = names
        msg.position = positions
        self.last_command_stamp = msg.header.stamp
        for driver in self._direct_drivers:
            driver.execute(msg)
        self._cmd_pub.publish(msg)

    def _publish_status(self, final: bool = False) -> None:
        if not final:
            self._check_graph()
        if self._status_pub is None or self.loop is None:
            return
        s = self.loop.summary()
        msg = RolloutStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.strategy = self.strategy_type
        msg.state = 'stopped' if final else 'running'
        msg.target_rate_hz = float(self.param('fps') * self.param('interpolation_multiplier'))
        for key in ('ticks', 'overruns', 'starved_ticks'):
            setattr(msg, key, int(s[key]))
        for key in (
            'rate_hz',
            'period_err_p50_ms',
            'period_err_p99_ms',
            'period_err_max_ms',
            'infer_p50_ms',
            'infer_p99_ms',
        ):
            setattr(msg, key, float(s[key]))
        self.fill_status(msg)
        self._status_pub.publish(msg)
        self._diag_pub.publish(diagnostics(msg, self.get_name()))
        self.status_text = status_line(msg)
        period = self.param('status_log_period_s')
        if period > 0 and not final:
            self.get_logger().info(self.status_text, throttle_duration_sec=period)

    def fill_status(self, msg: RolloutStatus) -> None:
        """Strategies add their own state (phase, episodes, recorder figures)."""

    def summary_extras(self) -> dict:
        return {}

    def destroy_node(self) -> None:
        if hasattr(self, '_link_owner'):  # absent when a parameter was refused in __init__
            self._link_owner.destroy()
        super().destroy_node()

    def autostart(self, stop: threading.Event) -> None:
        """Standalone process: configure and activate at start (like nav2's autostart)."""
        if not self.param('autostart'):
            self.get_logger().info('autostart is false: waiting unconfigured for a lifecycle manager')
            return
        for step, want in ((self.trigger_configure, 'inactive'), (self.trigger_activate, 'active')):
            if stop.is_set():
                return
            step()
            if self.state_label != want:
                self.get_logger().error(f'autostart stopped: {self.last_error}')
                self.finished.set()
                return


def main(args=None):
    return run_node(BaseStrategyNode, args, autostart=True)


if __name__ == '__main__':
    sys.exit(main())

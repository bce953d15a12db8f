# SPDX-License-Identifier: Apache-2.0
"""What the recording strategies (sentry, highlight, dagger) share.

The strategy never writes a dataset itself: on every policy tick it
publishes one RolloutFrame on `~/frames` (observation by name, the action
asked for, the action the driver actually executed after its safety limits,
the stamps of the camera frames used) and drives the recorder node through
its Trigger services (`start_episode`, `save_episode`, `discard_episode`,
`push`). Those calls run on a worker thread, so saving and uploading never
stall the control loop; the robot keeps moving while an episode is saved.
"""

import json
import queue
import threading

from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from rollout_ros.core.speech import Speaker
from rollout_ros.nodes.lifecycle_client import call_blocking
from rollout_ros.strategies.base_strategy import BaseStrategyNode
from rollout_ros_interfaces.msg import InputEvent, RecorderStatus, RolloutFrame

RECORDER_SERVICES = ('start_episode', 'save_episode', 'discard_episode', 'push')


def stamp_key(stamp) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


class RecordingStrategyNode(BaseStrategyNode):
    summary_complete_at_stop = False

    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare(
            'recorder_node',
            'recorder',
            'Recorder node: its ~/start_episode, ~/save_episode, ~/discard_episode and ~/push '
            "services are called, and it subscribes to this node's ~/frames.",
        )
        self.declare(
            'recorder_timeout_s',
            60.0,
            'Longest wait for one recorder service call (a save of a long episode) [s].',
            min_value=0.1,
        )
        self.declare(
            'input_topics',
            ['keyboard/events', 'pedal/events'],
            'InputEvent topics (keyboard, foot pedal) whose key presses drive this strategy.',
        )
        self.declare('stop_keys', ['esc'], 'Keys that end the run (the loop stops, recordings are saved).')
        self.declare(
            'play_sounds',
            True,
            'Speak events (episode saved, paused...) through the '
            "system's speech tool (spd-say / espeak) where there is one.",
            read_only=False,
        )
        self.episodes_saved = 0  # by this run, rotations by the recorder included
        self.frames_saved = 0
        self.recording = False  # an episode is open on the recorder
        self.recorder_errors: list[str] = []
        self.recorder_status: RecorderStatus | None = None  # the recorder's latest ~/status
        self._frames_pub = None
        self._rec_clients: dict = {}
        self._pending: RolloutFrame | None = None
        self._executed: dict[tuple[int, int], dict[str, float]] = {}
        self._requests: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self.speaker = Speaker()

    # Lifecycle ----------------------------------------------------------------
    def configure(self) -> None:
        super().configure()
        self.speaker.enabled = self.param('play_sounds')
        # Reliable and deep: a frame lost here is a dataset row lost.
        self._frames_pub = self.create_lifecycle_publisher(RolloutFrame, '~/frames', 200)
        rec = self.node_path(self.param('recorder_node'))
        for name in RECORDER_SERVICES:
            self._rec_clients[name] = self._link.create_client(Trigger, f'{rec}/{name}', callback_group=self._io_group)
        self._subs.append(
            self._link.create_subscription(
                RecorderStatus, f'{rec}/status', self._on_recorder_status, 10, callback_group=self._io_group
            )
        )
        for name, client in self._managed.items():
            if 'robot_driver' in name:
                self._subs.append(
                    self._link.create_subscription(
                        JointState,
                        f'{client.target}/executed_commands',
                        self._on_executed,
                        50,
                        callback_group=self._io_group,
                    )
                )
        for topic in self.param('input_topics'):
            self._subs.append(
                self._link.create_subscription(InputEvent, topic, self._on_input, 10, callback_group=self._io_group)
            )
        self._worker = threading.Thread(target=self._serve_requests, name='recorder-calls', daemon=True)
        self._worker.start()

    def activate(self) -> None:
        self.episodes_saved = self.frames_saved = 0
        self.recorder_errors = []
        super().activate()
        self.on_loop_started()

    def deactivate(self) -> None:
        self._finish_recording()
        self._walk_back('inactive')

    def _finish_recording(self) -> None:
        """Before the managed nodes go: the last frame out, the open episode
        saved, every queued recorder call done, the summary counting them."""
        self._stop_loop()
        self._flush_pending()
        self.before_walk_back()
        self._drain_requests()
        if self.summary:
            self.summary.update(self.summary_extras())
            self.report_summary()

    def cleanup(self) -> None:
        if self._worker is not None:
            self._requests.put(None)
            self._worker.join(timeout=self.param('recorder_timeout_s'))
            self._worker = None
        for client in self._rec_clients.values():
            self._link.destroy_client(client)
        self._rec_clients.clear()
        if self._frames_pub is not None:
            self.destroy_lifecycle_publisher(self._frames_pub)
            self._frames_pub = None
        super().cleanup()

    # Hooks for the strategies -------------------------------------------------
    def on_loop_started(self) -> None:
        """Called once the loop runs (e.g. sentry opens its first episode)."""

    def before_walk_back(self) -> None:
        """The loop has stopped; the default saves an open episode, so a stop
        (Ctrl-C, duration, a failed node) never loses recorded frames."""
        if self.recording and self._recorder_active():
            self.request('save_episode')

    def _recorder_active(self) -> bool:
        """False once the recorder left `active` (a writer failure): it closed
        the open episode itself, and calls would only wait for their timeout."""
        name = next((n for n in self._managed if n.strip('/') == self.param('recorder_node').strip('/')), None)
        return name is None or self._managed_states.get(name) == 'active'

    def intervention(self) -> bool:
        return False

    def reset_policy(self) -> None:
        """The policy starts afresh (loop thread): queued actions (an ACT chunk,
        an RTC queue) and hidden state were planned for a world that is gone."""
        policy = self.local_policy
        if policy is not None:
            policy.reset()
        if policy is None or policy is self._chunks:
            # The policy node runs elsewhere: its own queue goes through ~/reset.
            self.run_async(self._call_policy_reset)

    def _call_policy_reset(self) -> None:
        service = self.param('policy_service').rsplit('/', 1)[0] + '/reset'
        client = self._link.create_client(Trigger, service, callback_group=self._io_group)
        try:
            if not client.wait_for_service(timeout_sec=1.0):
                self.get_logger().warning(f'{service} unavailable: the policy keeps its queued actions')
                return
            call_blocking(client, Trigger.Request(), 2.0)
        finally:
            self._link.destroy_client(client)

    def on_key(self, key: str) -> None:
        """A key or pedal press (not release, not auto-repeat) while the loop runs."""

    def _on_input(self, msg: InputEvent) -> None:
        if msg.value != 1 or self.loop is None or self.loop.stop_event.is_set():
            return
        if msg.key in self.param('stop_keys'):
            self.get_logger().info(f'{msg.key}: stopping')
            self.loop.stop()
            return
        self.on_key(msg.key)

    # Recorder calls -----------------------------------------------------------
    def request(self, service: str, then=None) -> None:
        """Queue a recorder call; `then(ok, message)` runs on the worker afterwards."""
        if service == 'start_episode':
            self.recording = True
        elif service in ('save_episode', 'discard_episode'):
            self.recording = False

        def call():
            ok, message = self._call_recorder(service)
            if then is not None:
                then(ok, message)

        self.run_async(call)

    def run_async(self, fn) -> None:
        """Run `fn` on the worker thread, in order with the recorder calls:
        whatever may block (services, saves, leader moves) stays off the loop."""
        self._requests.put(fn)

    def _serve_requests(self) -> None:
        while True:
            fn = self._requests.get()
            try:
                if fn is None:
                    return
                fn()
            except Exception as e:  # noqa: BLE001 - one failed call must not end the worker
                self.get_logger().error(f'{type(e).__name__}: {e}')
            finally:
                self._requests.task_done()

    def _drain_requests(self) -> None:
        if self._worker is not None:
            self._requests.join()

    def _call_recorder(self, service: str) -> tuple[bool, str]:
        client = self._rec_clients.get(service)
        if client is None or not client.wait_for_service(timeout_sec=2.0):
            return self._recorder_failed(service, 'service not available')
        resp = call_blocking(client, Trigger.Request(), self.param('recorder_timeout_s'))
        if resp is None:
            return self._recorder_failed(service, 'no reply in recorder_timeout_s')
        if not resp.success:
            return self._recorder_failed(service, resp.message)
        if service == 'save_episode':
            info = _json_or_empty(resp.message)
            # The recorder's session counts also hold the episodes it rotated on its own (sentry).
            self.episodes_saved = max(self.episodes_saved + 1, int(info.get('session_episodes', 0)))
            self.frames_saved = max(self.frames_saved + int(info.get('frames', 0)), int(info.get('session_frames', 0)))
            self.get_logger().info(f'episode {info.get("episode_index", "?")} saved ({info.get("frames", "?")} frames)')
            self.speaker.say('episode saved')
        return True, resp.message

    def _recorder_failed(self, service: str, why: str) -> tuple[bool, str]:
        text = f'recorder {service}: {why}'
        self.recorder_errors.append(text)
        self.get_logger().error(text)
        return False, why

    # Status -------------------------------------------------------------------
    def _on_recorder_status(self, msg: RecorderStatus) -> None:
        self.recorder_status = msg

    def fill_status(self, msg) -> None:
        rec = self.recorder_status or RecorderStatus()
        msg.recording = self.recording
        # The recorder also saves on its own (sentry rotation): its count is the truth.
        msg.episodes_saved = max(self.episodes_saved, rec.session_episodes)
        msg.recorder_errors = len(self.recorder_errors)
        msg.episode_frames = rec.episode_frames
        msg.buffer_seconds = rec.ring_seconds
        msg.upload_state = rec.upload_state

    def summary_extras(self) -> dict:
        """This run's episodes and frames (the CLI adds the dataset's totals as dataset_*)."""
        rec = self.recorder_status or RecorderStatus()
        return {
            'episodes': max(self.episodes_saved, int(rec.session_episodes)),
            'frames': max(self.frames_saved, int(getattr(rec, 'session_frames', 0))),
            'recorder_errors': len(self.recorder_errors),
        }

    # Frames -------------------------------------------------------------------
    def _on_executed(self, msg: JointState) -> None:
        # One entry per command stamp; several drivers (one per arm) each add their joints.
        key = stamp_key(msg.header.stamp)
        self._executed.setdefault(key, {}).update(zip(msg.name, msg.position))
        while len(self._executed) > 64:
            self._executed.pop(next(iter(self._executed)))

    def on_policy_tick(self, obs, action) -> None:
        self._record(obs, action)
        super().on_policy_tick(obs, action)

    def _record(self, obs, action) -> None:
        state, images, stamp = obs
        frame = RolloutFrame()
        frame.header.stamp = stamp
        frame.state_names = list(state)
        frame.state = [float(v) for v in state.values()]
        frame.action_names = list(action)
        frame.action = [float(v) for v in action.values()]
        frame.action_sent = self.last_command_stamp
        frame.intervention = self.intervention()
        frame.task = self.param('task')
        frame.camera_names = list(images)
        frame.camera_stamps = [img.header.stamp for img in images.values()]
        # The driver's echo of this command arrives a moment later: the frame
        # goes out one policy tick late, with the executed action filled in.
        self._flush_pending()
        self._pending = frame

    def _flush_pending(self) -> None:
        frame, self._pending = self._pending, None
        if frame is None or self._frames_pub is None:
            return
        executed = self._executed.get(stamp_key(frame.action_sent), {})
        names = self.mapper.ros_joint_names
        if all(n in executed for n in names):
            values = self.mapper.observation_state(names, [executed[n] for n in names])
            # With an action processor the policy's action space may not be the joints'.
            if all(a in values for a in frame.action_names):
                frame.action_executed = [float(values[a]) for a in frame.action_names]
        self._frames_pub.publish(frame)


def _json_or_empty(text: str) -> dict:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}

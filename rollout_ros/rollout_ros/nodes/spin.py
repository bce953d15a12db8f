# SPDX-License-Identifier: Apache-2.0
"""Process entry for a single node: Ctrl-C and SIGTERM run an ordered
shutdown (rclpy does not call on_shutdown by itself on a signal)."""

import atexit
import os
import signal
import sys
import threading
import time

import rclpy
from rclpy.exceptions import InvalidHandle, ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


class StopRequest(BaseException):
    """A second Ctrl-C / SIGTERM: give up the orderly stop's waits (a save,
    an upload). BaseException, so no `except Exception` on the way swallows it."""


# Ctrl-C in the terminal of `ros2 launch` reaches every node twice: from the
# terminal (the whole process group) and once more forwarded by launch. A
# repeat this soon after the first is that echo, not a second press.
SIGNAL_ECHO_S = 2.0
# How long a managed node, told to stop, leaves its manager (the strategy,
# stopping too) to take it down in order: the episode saved while the
# recorder still runs, the driver last, before it shuts itself down.
MANAGER_GRACE_S = 10.0


def install_stop_signals(stop: threading.Event, describe=None, echo_s: float = 0.0) -> None:
    """First SIGINT/SIGTERM sets `stop` (and prints `describe()`, the orderly
    stop's promise); the second (after `echo_s`) raises StopRequest in the main thread."""
    state = {'raised': False, 'first': 0.0}

    def handler(signum, frame):
        if state['raised']:
            return  # the abort is under way: never interrupt a driver's torque policy
        if stop.is_set():
            if time.monotonic() - state['first'] < echo_s:
                return
            state['raised'] = True
            raise StopRequest
        state['first'] = time.monotonic()
        stop.set()
        if describe is not None:
            print(describe(), file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def parameter_refusal(e: ParameterException) -> tuple[str, str]:
    """(parameter, reason) of rclpy's refusal of a parameter value; its text
    is '<what>. Reason: <reason>: <parameter>'."""
    text = str(e)
    head, _, param = text.rpartition(': ')
    return param, head.split('Reason: ', 1)[-1]


def exit_process(code: int):
    """End the process with `code` once its teardown is complete.

    Python's own exit then spends seconds destroying torch and the DDS
    participant (4-10 s measured on a loaded 2-core machine) after the arm is
    safe and the data is on disk, and whoever waits on the exit (launch, a
    user, a supervisor) waits that long. What that exit would do for us is
    done here: other non-daemon threads are joined, atexit handlers run (log
    handlers flush), stdout/stderr are flushed.
    """
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def make_executor() -> SingleThreadedExecutor:
    """One executor thread per process.

    rclpy's MultiThreadedExecutor rebuilds its wait set in Python on every
    wake-up and spins while a mutually exclusive callback is still running.
    Next to a policy whose torch ops release and re-take the GIL, that
    spinning starved inference for seconds (measured: a first chunk of 8 s
    instead of 20 ms), and in a strategy process it halved the loop rate.
    Callbacks that must wait on other services use their own helper executor
    (see the strategy's link node) instead.
    """
    return SingleThreadedExecutor()


# Destroyed entities an executor may meet in its wait set before it counts as dead.
MAX_STALE_HANDLES = 1000


def spin_guarded(executor, on_death, name: str = 'executor') -> threading.Thread:
    """Spin `executor` on a daemon thread; an exception that escapes a callback
    (it ends rclpy's spin, and every timer and service of the process with it)
    is handed to `on_death(message)` so the run stops with an error instead of
    standing with no executor."""

    def spin():
        stale_handles = 0
        while True:
            try:
                executor.spin()
                return
            except InvalidHandle:
                # An entity destroyed while the wait set held it (a transition
                # tearing down its timers and subscriptions): rclpy raises from
                # spin, yet nothing is lost, so spinning resumes. Only a stream
                # of them, which no teardown makes, is a dead executor.
                stale_handles += 1
                if stale_handles <= MAX_STALE_HANDLES:
                    continue
                on_death(f'{name} thread died: {stale_handles} destroyed handles in its wait set')
                return
            except BaseException as e:  # noqa: BLE001 - reported, the owner stops the run
                on_death(f'{name} thread died: {type(e).__name__}: {e}')
                return

    thread = threading.Thread(target=spin, name=name, daemon=True)
    thread.start()
    return thread


def fail_node(node, stop: threading.Event | None = None):
    """on_death for spin_guarded: the node's error, logged once, and the run stopped."""

    def on_death(message: str) -> None:
        if not node.last_error:
            node.last_error = message
        node.get_logger().error(message)
        loop = getattr(node, 'loop', None)
        if loop is not None:
            loop.stop()
        if stop is not None:
            stop.set()

    return on_death


class _OwnerNamedNode(Node):
    """A node whose topic and service names resolve as its owner's would.

    Names (relative, private `~/` and absolute alike) go through the owner's
    expansion and remap rules, so `--ros-args -r` and launch `remappings=`
    given for the owner move the entities living here too; this node's own
    arguments stay out (use_global_arguments=False), or `-r __node:=` would
    give it the owner's name.
    """

    def __init__(self, owner: Node, name: str):
        self._owner = owner  # before Node.__init__, which creates services of its own
        super().__init__(
            name,
            namespace=owner.get_namespace(),
            context=owner.context,
            use_global_arguments=False,
            start_parameter_services=False,
        )

    def create_subscription(self, msg_type, topic, *args, **kwargs):
        return super().create_subscription(msg_type, self._owner.resolve_topic_name(topic), *args, **kwargs)

    def create_publisher(self, msg_type, topic, *args, **kwargs):
        return super().create_publisher(msg_type, self._owner.resolve_topic_name(topic), *args, **kwargs)

    def create_client(self, srv_type, srv_name, *args, **kwargs):
        return super().create_client(srv_type, self._owner.resolve_service_name(srv_name), *args, **kwargs)

    def create_service(self, srv_type, srv_name, *args, **kwargs):
        return super().create_service(srv_type, self._owner.resolve_service_name(srv_name), *args, **kwargs)


class LinkNode:
    """A helper node of `owner`, `<owner>_link`, on its own executor thread.

    Subscriptions and service clients that `owner` must be able to wait on
    from inside its own callbacks (a transition waiting for replies or first
    data) live here, so every process can keep one single-threaded executor
    and an external lifecycle manager can drive `owner` without a deadlock.
    Their names resolve with the owner's remap rules, and the node is visible
    in the graph: `ros2 node info <owner>_link` lists the owner's inputs.
    """

    def __init__(self, owner: Node, thread_name: str):
        self.node = _OwnerNamedNode(owner, f'{owner.get_name()}_link')
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, name=thread_name, daemon=True)
        self._thread.start()

    def destroy(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        # A spin thread still running when the interpreter exits aborts the
        # process ('terminate called without an active exception').
        self._thread.join(timeout=2.0)
        self.node.destroy_node()


def run_node(node_cls, args=None, autostart=False) -> int:
    """Spin one node until a signal (or, for a strategy, until it finishes).

    Returns the process exit code: 1 when the node ends with an error, so
    launch reports a failed run as failed. As a process entry (no `args`),
    the process ends here, at once (see exit_process).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    install_stop_signals(stop, echo_s=SIGNAL_ECHO_S)
    try:
        node = node_cls()
    except ParameterException as e:
        # A value outside a declared range (-p fps:=0, a params file): one
        # line naming the parameter, not rclpy's traceback.
        param, reason = parameter_refusal(e)
        print(
            f'{node_cls.__name__}: parameter {param}: {reason}. Fix: give {param} a value in its range '
            f'(ros2 param describe <node> {param}) in the launch arguments or the params file.',
            file=sys.stderr,
        )
        rclpy.try_shutdown()
        return 2
    executor = make_executor()
    executor.add_node(node)
    spinner = spin_guarded(executor, fail_node(node, stop))
    try:
        if autostart and hasattr(node, 'autostart'):
            node.autostart(stop)
        while not stop.wait(0.2):
            if getattr(node, 'finished', None) is not None and node.finished.is_set():
                break
        if not autostart:
            await_manager(node, MANAGER_GRACE_S)
    except StopRequest:
        pass  # a second signal before the shutdown started: the shutdown below is the stop
    finally:
        try:
            if node.state_label not in ('finalized',):
                node.trigger_shutdown()
        except StopRequest:
            # Second signal during the shutdown: its waits (a save, an upload)
            # are abandoned; what must not be skipped (torque) runs in abort().
            print(f'{node_cls.__name__}: second signal: shutdown abandoned', file=sys.stderr, flush=True)
            node.abort()
            node.last_error = node.last_error or 'shutdown abandoned on a second signal'
        executor.shutdown(timeout_sec=2.0)
        # A spin thread still inside a callback when the interpreter exits
        # aborts the process ('terminate called without an active exception').
        spinner.join(timeout=2.0)
        error = node.last_error
        node.destroy_node()
        rclpy.try_shutdown()
    if error:
        print(f'{node_cls.__name__}: {error}', file=sys.stderr)
    code = 1 if error else 0
    if args is None:
        exit_process(code)
    return code


def await_manager(node, timeout_s: float) -> None:
    """A configured node that is told to stop first gives its manager the time
    to take it down (under launch every process gets the signal at once)."""
    if node.state_label not in ('inactive', 'active'):
        return  # never brought up: nothing to take down in order
    deadline = time.monotonic() + timeout_s
    # The manager's walk ends with the shutdown transition (finalized).
    while node.state_label != 'finalized' and time.monotonic() < deadline:
        time.sleep(0.05)

# SPDX-License-Identifier: Apache-2.0
"""Keyboard and pedal input: key decoding from a real pty, the terminal mode
given back, evdev records from FIFOs and files, loud configure errors, and
both nodes end to end (events, pedal heartbeat, diagnostics going ERROR when
the device vanishes)."""

import os
import stat
import termios
import threading
import time
from pathlib import Path

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from helpers import spin_in_background, wait_for
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.input.keyboard import KeyDecoder, TerminalKeyReader
from rollout_ros.hardware.input.pedal import DEFAULT_KEY_CODES, INPUT_EVENT, PedalReader, parse_key_codes
from rollout_ros.nodes.keyboard_node import EVENTS_QOS, KeyboardNode
from rollout_ros.nodes.pedal_node import PedalNode
from rollout_ros_interfaces.msg import InputEvent

PKG = Path(__file__).resolve().parents[1]
KEY_A, KEY_B, KEY_S = 30, 48, 31  # KEY_S is not configured


def record(code, value, type_=1, t=1700000000.25):
    return INPUT_EVENT.pack(int(t), round((t % 1) * 1e6), type_, code, value)


def press_release(code, t=1700000000.25):
    syn = record(0, 0, type_=0, t=t)
    return record(code, 1, t=t) + syn + record(code, 0, t=t + 0.1) + syn


@pytest.fixture
def pty():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    yield master, slave, path
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / 'pedal-event-kbd'
    os.mkfifo(path)
    return path


def names(keys):
    return [k.name for k in keys]


# Keyboard -----------------------------------------------------------------
def test_decoder_sequences_split_reads_and_lone_esc():
    d = KeyDecoder()
    assert names(d.feed(' \t\r\x7f\nq')) == ['space', 'tab', 'enter', 'backspace', 'enter', 'q']
    assert names(d.feed('\r\n')) == ['enter']  # CR LF from one Enter press
    assert d.feed('\x1b') == [] and d.pending
    assert names(d.feed('[')) == [] and names(d.feed('A')) == ['up']  # split across reads
    assert names(d.feed('\x1bOB\x1b[C\x1b[1;5D\x1b[3~\x1b[200~')) == ['down', 'right', 'left', 'delete']
    assert names(d.feed('\x1bq')) == ['esc', 'q']  # ESC then a key: both count
    assert names(d.feed('\x1b')) == [] and names(d.timeout()) == ['esc']
    assert names(d.feed('\x1b[')) == [] and names(d.timeout()) == ['esc', '[']
    assert names(d.feed('\x03é')) == ['ctrl+c', 'é']
    assert [k.code for k in d.feed(' q\x1b[A')] == [32, ord('q'), 0]


def test_keyboard_decodes_keys_from_a_pty(pty):
    master, _, path = pty
    keys, got = [], threading.Event()

    def on_key(key):
        keys.append(key)
        got.set()

    with TerminalKeyReader(path, on_key=on_key, esc_timeout_s=0.05) as reader:
        reader.start()
        for data in (b' ', b'\t', b'\r'):
            os.write(master, data)
        assert wait_for(lambda: len(keys) == 3)
        os.write(master, b'\x1b')  # a lone ESC, told by the timeout
        assert wait_for(lambda: len(keys) == 4)
        os.write(master, b'\x1b[Aq\x1bOD\x7f')  # arrows, not ESC + letters
        assert wait_for(lambda: len(keys) == 8)
        time.sleep(0.2)
    assert names(keys) == ['space', 'tab', 'enter', 'esc', 'up', 'q', 'left', 'backspace']
    assert all(abs(k.stamp - time.time()) < 60 for k in keys)


def test_keyboard_restores_the_tty_mode(pty):
    _, slave, path = pty
    before = termios.tcgetattr(slave)
    reader = TerminalKeyReader(path)
    reader.open()
    during = termios.tcgetattr(slave)
    assert not during[3] & (termios.ICANON | termios.ECHO)
    assert during[3] & termios.ISIG  # Ctrl-C still stops the process
    reader.close()
    assert termios.tcgetattr(slave) == before
    with pytest.raises(RuntimeError):  # and when the user of it fails
        with TerminalKeyReader(path):
            assert not termios.tcgetattr(slave)[3] & termios.ICANON
            raise RuntimeError('boom')
    assert termios.tcgetattr(slave) == before


def test_keyboard_reports_a_closed_terminal(pty):
    master, _, path = pty
    lost = []
    with TerminalKeyReader(path, on_gone=lost.append) as reader:
        reader.start()
        os.close(master)
        assert wait_for(reader.gone.is_set)
    assert lost and path in lost[0]


def test_keyboard_config_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        TerminalKeyReader(str(tmp_path / 'no-tty')).open()
    assert e.value.param == 'tty_path' and 'does not exist' in str(e.value) and 'Fix:' in str(e.value)
    plain = tmp_path / 'plain'
    plain.write_text('x')
    with pytest.raises(ConfigError, match='not a terminal') as e:
        TerminalKeyReader(str(plain)).open()
    assert e.value.param == 'tty_path'


# Pedal ----------------------------------------------------------------------
def test_pedal_reads_records_from_a_file_and_reports_its_removal(tmp_path):
    path = tmp_path / 'events'
    path.write_bytes(press_release(KEY_A) + record(KEY_S, 1) + record(4, 4, type_=4))
    events, lost = [], []
    with PedalReader(str(path), DEFAULT_KEY_CODES, on_event=events.append, on_gone=lost.append, grab=True) as reader:
        assert reader.kind == 'file' and not reader.grabbed and 'unsupported' in reader.grab_note
        reader.start()
        assert wait_for(lambda: len(events) == 3)
        with path.open('ab') as f:  # followed like tail -f
            f.write(record(KEY_B, 1, t=1700000001.5))
        assert wait_for(lambda: len(events) == 4)
        assert not reader.gone.is_set()
        path.unlink()
        assert wait_for(reader.gone.is_set)
    assert [(e.name, e.code, e.value) for e in events] == [
        ('KEY_A', KEY_A, 1),
        ('KEY_A', KEY_A, 0),
        (None, KEY_S, 1),
        ('KEY_B', KEY_B, 1),
    ]
    assert events[0].stamp == pytest.approx(1700000000.25, abs=1e-6)
    assert events[1].stamp == pytest.approx(1700000000.35, abs=1e-6)
    assert lost == ['the file was removed'] and reader.events == 4


def test_pedal_fifo_partial_records_and_writer_close(fifo):
    events = []
    with PedalReader(str(fifo), {'left': KEY_A}, on_event=events.append) as reader:
        reader.start()
        time.sleep(0.15)
        assert not reader.gone.is_set()  # no writer yet is not a dead pedal
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        data = record(KEY_A, 1)
        os.write(writer, data[:10])
        time.sleep(0.1)
        os.write(writer, data[10:] + record(KEY_A, 2))
        assert wait_for(lambda: len(events) == 2)
        os.close(writer)
        assert wait_for(reader.gone.is_set)
        assert 'writer' in reader.gone_reason
    assert [(e.name, e.value) for e in events] == [('left', 1), ('left', 2)]


def test_pedal_config_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        PedalReader(str(tmp_path / 'missing-event-kbd')).open()
    assert e.value.param == 'device_path'
    assert 'does not exist' in str(e.value) and '/dev/input/by-id' in str(e.value)
    with pytest.raises(ConfigError, match='not an input device') as e:
        PedalReader(str(tmp_path)).open()
    assert e.value.param == 'device_path'
    with pytest.raises(ConfigError, match='not an evdev') as e:
        PedalReader('/dev/null').open()
    assert e.value.param == 'device_path'
    with pytest.raises(ConfigError):
        PedalReader('').open()


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads any file: no permission error to test')
def test_pedal_permission_error_names_the_fix(tmp_path):
    path = tmp_path / 'locked-event-kbd'
    path.write_bytes(b'')
    path.chmod(0)
    try:
        with pytest.raises(ConfigError) as e:
            PedalReader(str(path)).open()
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert e.value.param == 'device_path' and 'input group' in str(e.value) and 'udev' in str(e.value)


@pytest.mark.parametrize(
    'text',
    [
        'not a key',
        '[0]',
        '{}',
        '{"a": "KEY_NOPE"}',
        '{"a": 0}',
        '{"a": true}',
        '{"a": 30, "b": 30}',
        '[30, "KEY_A"]',
        '{"a": 30',
        '',
    ],
)
def test_key_codes_are_checked(text):
    with pytest.raises(ConfigError) as e:
        parse_key_codes(text)
    assert e.value.param == 'key_codes'


def test_key_codes_parse():
    assert parse_key_codes('{"pause": 30, "push": 46}') == {'pause': 30, 'push': 46}
    # By evdev name, as lerobot's pedal bindings and evtest write them, or by number.
    assert parse_key_codes('KEY_A,KEY_B, 46') == {'KEY_A': 30, 'KEY_B': 48, 'KEY_C': 46}
    assert parse_key_codes('["key_space", "30", 0x2fe]'.replace('0x2fe', '766')) == {
        'KEY_SPACE': 57,
        'KEY_A': 30,
        'code_766': 766,
    }
    assert parse_key_codes('{"pause": "KEY_A", "push": "BTN_1"}') == {'pause': 30, 'push': 0x101}


def test_evdev_key_names_are_the_kernels():
    import re

    from rollout_ros.hardware.input.pedal import EVDEV_KEYS

    header = Path('/usr/include/linux/input-event-codes.h')
    if not header.is_file():
        pytest.skip('no kernel headers here to compare with')
    defined = {
        m[1]: int(m[2], 0)
        for m in re.finditer(r'#define\s+((?:KEY|BTN)_\w+)\s+(0x[0-9a-f]+|\d+)\b', header.read_text())
    }
    assert {name: defined.get(name) for name in EVDEV_KEYS} == EVDEV_KEYS


# Nodes ----------------------------------------------------------------------
@pytest.fixture
def spin(ros):
    started = []

    def start(node):
        started.append((node, spin_in_background(node)))
        return node

    yield start
    for node, ex in started:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_keyboard_node_publishes_keys(spin, pty):
    master, slave, path = pty
    before = termios.tcgetattr(slave)
    node = spin(KeyboardNode(parameter_overrides=[Parameter('tty_path', value=path)]))
    got = []
    node.create_subscription(InputEvent, '/keyboard/events', got.append, EVENTS_QOS)
    node.trigger_configure()
    assert node.state_label == 'inactive', node.last_error
    os.write(master, b'x')  # inactive: dropped, not queued
    time.sleep(0.3)
    node.trigger_activate()
    assert node.state_label == 'active'
    os.write(master, b' ')
    os.write(master, b'\x1b')
    time.sleep(0.3)
    os.write(master, b'\x1b[B\r')
    assert wait_for(lambda: len(got) == 4)
    assert [(m.key, m.value, m.device) for m in got] == [
        ('space', 1, 'keyboard'),
        ('esc', 1, 'keyboard'),
        ('down', 1, 'keyboard'),
        ('enter', 1, 'keyboard'),
    ]
    assert got[0].code == 32 and got[0].header.stamp.sec > 0
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert termios.tcgetattr(slave) == before


def test_keyboard_node_configure_fails_loudly(spin, tmp_path):
    node = spin(KeyboardNode(parameter_overrides=[Parameter('tty_path', value=str(tmp_path / 'x'))]))
    node.trigger_configure()
    assert node.state_label == 'unconfigured'
    assert 'tty_path' in node.last_error and 'Fix:' in node.last_error


def test_pedal_node_events_heartbeat_and_diagnostics(spin, fifo):
    node = spin(
        PedalNode(
            parameter_overrides=[
                Parameter('device_path', value=str(fifo)),
                Parameter('heartbeat_hz', value=10.0),
                Parameter('key_codes', value='{"pause": 30, "correct": 48}'),
            ]
        )
    )
    events, beats, diags = [], [], []
    node.create_subscription(InputEvent, '/pedal/events', events.append, EVENTS_QOS)
    node.create_subscription(Header, '/pedal/heartbeat', beats.append, 10)
    node.create_subscription(
        DiagnosticArray, '/diagnostics', lambda m: diags.extend(s for s in m.status if s.hardware_id == str(fifo)), 10
    )
    node.trigger_configure()
    assert node.state_label == 'inactive', node.last_error
    assert 'unsupported' in node.reader.grab_note  # grab asked for, cleanly skipped
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        node.trigger_activate()
        assert node.state_label == 'active'
        assert wait_for(lambda: beats and diags and diags[-1].level == DiagnosticStatus.OK)
        assert beats[-1].frame_id == fifo.name
        os.write(writer, press_release(KEY_B, t=1700000002.5) + record(KEY_S, 1))
        assert wait_for(lambda: len(events) >= 2)
        time.sleep(0.2)  # the unmapped code must not follow
    finally:
        os.close(writer)
    assert [(m.key, m.code, m.value) for m in events] == [('correct', KEY_B, 1), ('correct', KEY_B, 0)]
    assert events[0].device == fifo.name
    assert (events[0].header.stamp.sec, events[0].header.stamp.nanosec) == (1700000002, 500000000)
    assert wait_for(lambda: diags[-1].level == DiagnosticStatus.ERROR)
    assert 'gone' in diags[-1].message and node.device_lost
    # A dead pedal has no heartbeat (one may have been in flight).
    time.sleep(0.3)
    n = len(beats)
    time.sleep(1.0)
    assert len(beats) <= n + 1


def test_pedal_node_reports_unmapped_codes_on_request(spin, fifo):
    node = spin(
        PedalNode(
            parameter_overrides=[Parameter('device_path', value=str(fifo)), Parameter('report_unmapped', value=True)]
        )
    )
    events = []
    node.create_subscription(InputEvent, '/pedal/events', events.append, EVENTS_QOS)
    node.trigger_configure()
    node.trigger_activate()
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, record(KEY_S, 1) + record(KEY_A, 1))
        assert wait_for(lambda: len(events) == 2)
    finally:
        os.close(writer)
    assert [m.key for m in events] == [f'code_{KEY_S}', 'KEY_A']


def test_pedal_node_configure_fails_loudly(spin, tmp_path):
    node = spin(PedalNode(parameter_overrides=[Parameter('device_path', value=str(tmp_path / 'usb-Pedal-event-kbd'))]))
    node.trigger_configure()
    assert node.state_label == 'unconfigured'
    assert 'device_path' in node.last_error and '/dev/input/by-id' in node.last_error


def test_input_yaml_matches_declared_parameters(ros):
    config = yaml.safe_load((PKG / 'config' / 'input.yaml').read_text())
    assert set(config) == {'keyboard', 'pedal'}
    for section, node_cls in (('keyboard', KeyboardNode), ('pedal', PedalNode)):
        node = node_cls()
        try:
            declared = {
                name: node.describe_parameter(name)
                for name in node._parameters
                if name not in ('use_sim_time', 'start_type_description_service')
            }
            values = config[section]['ros__parameters']
            assert set(values) == set(declared), (section, set(values) ^ set(declared))
            for name, value in values.items():
                assert declared[name].description
                assert value == node.param(name), f'{section}.{name}: yaml differs from the default'
        finally:
            node.destroy_node()

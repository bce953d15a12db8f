# SPDX-License-Identifier: Apache-2.0
"""BagWriter: messages serialized by rclpy go in, rosbags' Reader gets the same
bytes back, rclpy deserializes them equal, and metadata.yaml says what
`ros2 bag info` shows (topics, types, counts, storage)."""

import json
import threading

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Image, JointState

from rollout_ros.dataset.bags import BagWriter, package_share_dir, read_msgdef
from rollout_ros_interfaces.msg import RolloutFrame

FRAME_TYPE = 'rollout_ros_interfaces/msg/RolloutFrame'


def joint_state(i):
    msg = JointState()
    msg.header.stamp = Time(sec=100 + i, nanosec=5)
    msg.name = ['shoulder_pan', 'gripper']
    msg.position = [0.1 * i, -0.5]
    msg.velocity = [1.0, 2.0]
    return msg


def image(i):
    msg = Image()
    msg.header.frame_id = 'front'
    msg.height, msg.width, msg.encoding, msg.step = 4, 6, 'rgb8', 18
    msg.data = (np.arange(72, dtype=np.uint8) + i).tobytes()
    return msg


def frame(i):
    msg = RolloutFrame()
    msg.header.stamp = Time(sec=7, nanosec=i)
    msg.state_names = ['shoulder_pan.pos', 'gripper.pos']
    msg.state = [float(i), 2.5]
    msg.action_names = msg.state_names
    msg.action = [1.5, -2.0]
    msg.action_executed = [1.25, -2.0]
    msg.action_sent = Time(sec=8, nanosec=i)
    msg.intervention = i % 2 == 1
    msg.task = 'pick the cube'
    msg.camera_names = ['front']
    msg.camera_stamps = [Time(sec=7, nanosec=i)]
    return msg


TOPICS = {
    '/joint_states': ('sensor_msgs/msg/JointState', joint_state, 5),
    '/front/image_raw': ('sensor_msgs/msg/Image', image, 3),
    '/strategy/frames': (FRAME_TYPE, frame, 4),
}


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_round_trip_and_metadata(tmp_path, storage):
    bag = tmp_path / 'bag'
    sent = {}
    with BagWriter(bag, storage=storage) as writer:
        writer.add_topic('/joint_states', 'sensor_msgs/msg/JointState', qos='reliable')
        writer.add_topic('/front/image_raw', 'sensor_msgs/msg/Image', qos='sensor_data')
        writer.add_topic('/strategy/frames', FRAME_TYPE)  # definition read from the install
        for topic, (_, make, count) in TOPICS.items():
            for i in range(count):
                msg = make(i)
                t_ns = 1_000_000_000 + 1000 * i + len(topic)
                writer.write(topic, t_ns, serialize_message(msg))
                sent.setdefault(topic, []).append((t_ns, msg))

    got = {}
    with Reader(bag) as reader:
        for conn, t_ns, raw in reader.messages():
            got.setdefault(conn.topic, []).append((t_ns, raw, conn.msgtype))
    for topic, (msgtype, make, _count) in TOPICS.items():
        cls = type(make(0))
        assert [t for t, _, _ in got[topic]] == [t for t, _ in sent[topic]]
        assert {m for _, _, m in got[topic]} == {msgtype}
        assert [deserialize_message(bytes(raw), cls) for _, raw, _ in got[topic]] == [m for _, m in sent[topic]]

    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['version'] == 9
    assert meta['storage_identifier'] == storage
    assert meta['message_count'] == sum(c for _, _, c in TOPICS.values())
    topics = {t['topic_metadata']['name']: t for t in meta['topics_with_message_count']}
    assert set(topics) == set(TOPICS)
    for topic, (msgtype, _, count) in TOPICS.items():
        assert topics[topic]['message_count'] == count
        assert topics[topic]['topic_metadata']['type'] == msgtype
        assert topics[topic]['topic_metadata']['serialization_format'] == 'cdr'
    qos = topics['/front/image_raw']['topic_metadata']['offered_qos_profiles']
    assert qos[0]['reliability'] == 'best_effort'
    assert topics['/strategy/frames']['topic_metadata']['offered_qos_profiles'] == []
    # The hash ros2 bag play checks against the installed type: the one rosidl generated.
    hashes = json.loads((package_share_dir('rollout_ros_interfaces') / 'msg' / 'RolloutFrame.json').read_text())
    expected = next(h['hash_string'] for h in hashes['type_hashes'] if h['type_name'] == FRAME_TYPE)
    assert topics['/strategy/frames']['topic_metadata']['type_description_hash'] == expected
    assert meta['files'][0]['path'].endswith('.mcap' if storage == 'mcap' else '.db3')


def test_custom_definition_text_and_compression(tmp_path):
    """A type that is not installed anywhere, given as .msg text; it refers
    to an installed custom type, which is found by itself."""
    msgdef = 'rollout_ros_interfaces/RolloutFrame[] frames\nstring note\n'
    with BagWriter(tmp_path / 'bag', compression='storage') as writer:
        writer.add_topic('/batch', 'my_pkg/msg/Batch', msgdef=msgdef)
        # rclpy cannot build my_pkg's message; its CDR is the note (a string)
        # after an empty frames sequence, which rosbags can serialize.
        batch = writer.typestore.types['my_pkg/msg/Batch'](frames=[], note='hello')
        writer.write('/batch', 5, bytes(writer.typestore.serialize_cdr(batch, 'my_pkg/msg/Batch')))
    with Reader(tmp_path / 'bag') as reader:
        ((conn, _, raw),) = list(reader.messages())
        assert 'MSG: rollout_ros_interfaces/RolloutFrame' in conn.msgdef.data  # dependency, for play
        assert writer.typestore.deserialize_cdr(raw, 'my_pkg/msg/Batch').note == 'hello'


def test_threads_and_errors(tmp_path):
    writer = BagWriter(tmp_path / 'bag')
    writer.add_topic('/joint_states', 'sensor_msgs/msg/JointState')
    raw = serialize_message(joint_state(1))

    def burst(k):
        for i in range(200):
            writer.write('/joint_states', k * 1000 + i, raw)

    threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.raises(KeyError, match='/nope'):
        writer.write('/nope', 1, raw)
    with pytest.raises(ValueError, match='already added'):
        writer.add_topic('/joint_states', 'sensor_msgs/msg/JointState')
    with pytest.raises(FileNotFoundError, match='no_such_pkg'):
        writer.add_topic('/x', 'no_such_pkg/msg/Thing')
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match='closed'):
        writer.write('/joint_states', 1, raw)
    with Reader(tmp_path / 'bag') as reader:
        assert reader.message_count == 800


def test_read_msgdef():
    assert 'string task' in read_msgdef('rollout_ros_interfaces/msg/RolloutFrame')
    assert read_msgdef('rollout_ros_interfaces/RolloutFrame') == read_msgdef(FRAME_TYPE)
    with pytest.raises(ValueError):
        read_msgdef('RolloutFrame')

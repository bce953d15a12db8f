# SPDX-License-Identifier: Apache-2.0
from glob import glob

from setuptools import find_packages, setup

package_name = 'rollout_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/launch/include', glob('launch/include/*.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='rollout_ros maintainers',
    maintainer_email='maintainers@rollout-ros.dev',
    description='Deploy LeRobot policies on ROS 2 robots.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'rollout = rollout_ros.cli:main',
            'rollout_demo = rollout_ros.demo:main',
            'rollout_emulate = rollout_ros.emulate:main',
            'servo_bus_emulator = rollout_ros.hardware.emulator.servo_bus_emulator:main',
            'robot_driver = rollout_ros.nodes.robot_driver_node:main',
            'camera = rollout_ros.nodes.camera_node:main',
            'policy = rollout_ros.nodes.policy_node:main',
            'base_strategy = rollout_ros.strategies.base_strategy:main',
            'sentry_strategy = rollout_ros.strategies.sentry:main',
            'highlight_strategy = rollout_ros.strategies.highlight:main',
            'dagger_strategy = rollout_ros.strategies.dagger:main',
            'episodic_strategy = rollout_ros.strategies.episodic:main',
            'keyboard = rollout_ros.nodes.keyboard_node:main',
            'pedal = rollout_ros.nodes.pedal_node:main',
            'teleop = rollout_ros.nodes.teleop_node:main',
            'recorder = rollout_ros.nodes.recorder_node:main',
            'rollout_dataset = rollout_ros.dataset.cli:main',
        ],
    },
)

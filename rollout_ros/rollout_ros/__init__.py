# SPDX-License-Identifier: Apache-2.0
"""Deploy LeRobot policies on ROS 2 robots."""

# SPDX-License-Identifier: Apache-2.0
"""LeRobot v3 datasets written crash-safe, and what feeds them (video, ring buffer,
rotation, Hub, bags). No rclpy here."""

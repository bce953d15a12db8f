"""Deploy LeRobot policies on ROS 2 robots."""

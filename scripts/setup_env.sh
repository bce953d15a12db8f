#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Creates or refreshes .venv: Python 3.12, ROS 2 Kilted wheels, LeRobot, the
# colcon-built rollout_ros_interfaces and an editable rollout_ros, installed
# in the venv prefix the way ROS finds packages (ament index, share/, lib/).
# With ../shared/ros2 (or ROLLOUT_ROS2_SHARED) present, also the upstream
# launch, launch_ros and ros2 command-line tools from its wheels and
# composition_interfaces from its source.
# Idempotent: when nothing it depends on changed, it returns in about a second.
# Works as root without a tty (CI) and as a normal user.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.rollout_ros_setup"
LOCK="$ROOT/requirements/lock.txt"
SHARED_ROS2="${ROLLOUT_ROS2_SHARED:-$ROOT/../shared/ros2}"
# launch needs it and the shared wheels are installed without dependencies.
OSRF_PYCOMMON="osrf-pycommon==2.0.2"

log() { printf '[setup] %s\n' "$*"; }

find_python312() {
  if [ -n "${PYTHON312:-}" ]; then echo "$PYTHON312"; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/3.12*/bin/python3.12; do
      [ -x "$p" ] && { echo "$p"; return; }
    done
  fi
  command -v python3.12 || true
}

# Everything that should trigger a rebuild when it changes.
fingerprint() {
  { cat "$LOCK" "$ROOT/scripts/setup_env.sh" \
      "$ROOT/rollout_ros/setup.py" "$ROOT/rollout_ros/setup.cfg" \
      "$ROOT"/rollout_ros_interfaces/package.xml "$ROOT"/rollout_ros_interfaces/CMakeLists.txt \
      "$ROOT"/rollout_ros_interfaces/msg/* "$ROOT"/rollout_ros_interfaces/srv/* \
      "$ROOT/scripts/install_ros_layout.py" 2>/dev/null
  ls "$SHARED_ROS2"/wheels "$SHARED_ROS2"/src 2>/dev/null || true
  } | sha256sum | cut -d' ' -f1
}

want=$(fingerprint)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  log "environment up to date ($VENV)"
  exit 0
fi

start=$(date +%s)
PY=$(find_python312)
if [ -z "$PY" ]; then
  echo "[setup] error: Python 3.12 not found (ROS 2 Kilted and LeRobot need 3.12)." >&2
  echo "[setup] fix: 'pyenv install 3.12' or set PYTHON312=/path/to/python3.12" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

log "installing pinned packages (requirements/lock.txt)"
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q -r "$LOCK" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import rclpy, lerobot, dynamixel_sdk" || { echo "[setup] error: package install failed" >&2; exit 1; }

# torchcodec (LeRobot's default video decoder) needs FFmpeg's shared libraries
# under their usual names; without them every dataset load prints its loading
# traceback before LeRobot falls back to PyAV, and lerobot-info fails. PyAV's
# wheel carries an FFmpeg build (7.x, which torchcodec supports): when the
# machine has no FFmpeg of its own, expose PyAV's copies in .venv/lib, which
# the ROS wheels' bootstrapper puts on LD_LIBRARY_PATH of every venv process.
# Its other bundled libraries come along because $ORIGIN is the link's folder.
SITE=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
find "$VENV/lib" -maxdepth 1 -type l -lname "*/av.libs/*" -delete
if ! python -c "import torchcodec" >/dev/null 2>&1 && [ -d "$SITE/av.libs" ]; then
  for lib in "$SITE"/av.libs/*.so*; do
    base=$(basename "$lib")
    ln -sf "${lib#"$VENV/lib/"}" "$VENV/lib/$base"
    # libavutil-<hash>.so.59.39.100 -> libavutil.so.59, the name torchcodec links to
    case $base in
      libav*|libsw*) ln -sf "${lib#"$VENV/lib/"}" "$VENV/lib/$(echo "$base" | sed -E 's/-[0-9a-f]+\.so\.([0-9]+)\..*/.so.\1/')" ;;
    esac
  done
  if python -c "import torchcodec" >/dev/null 2>&1; then
    log "torchcodec decodes with PyAV's FFmpeg libraries (none on this machine)"
  else
    log "warning: torchcodec cannot load FFmpeg; LeRobot will warn and decode video with PyAV"
  fi
fi

# The ROS wheels were built in a manylinux container whose interpreter lived
# in /opt/python/cp3XX-cp3XX; their exported CMake targets still name that
# interpreter's include dir and numpy's include dir there. CMake rejects
# imported targets whose include dirs do not exist, so point those paths at
# this venv's interpreter and numpy. Editing our own venv's copies needs no
# root, unlike creating /opt/python links.
PYINC=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$(python -c "import numpy; print(numpy.get_include())")
TAG=$(python -c "import sys; v=sys.version_info; print(f'cp{v.major}{v.minor}-cp{v.major}{v.minor}')")
PYVER=$(python -c "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')")
{ grep -rlZ "/opt/python/$TAG/" "$VENV/share" --include='*.cmake' 2>/dev/null || true; } |
  xargs -0 -r sed -i \
    -e "s#/opt/python/$TAG/include/python$PYVER#$PYINC#g" \
    -e "s#/opt/python/$TAG/lib/python$PYVER/site-packages/numpy/_core/include#$NPINC#g"

# Installing the interfaces into the venv prefix puts their libraries in
# .venv/lib, which ros_wheels_bootstrapper already adds to LD_LIBRARY_PATH,
# and their Python package in site-packages: importable with no sourcing.
log "building rollout_ros_interfaces with colcon"
export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
(cd "$ROOT" && colcon --log-base "$ROOT/.colcon/log" build \
    --base-paths rollout_ros_interfaces \
    --build-base "$ROOT/.colcon/build" --install-base "$VENV" --merge-install \
    --event-handlers console_direct- >/dev/null) || {
  echo "[setup] error: colcon build of rollout_ros_interfaces failed; see $ROOT/.colcon/log/latest_build" >&2
  exit 1
}

if [ -d "$SHARED_ROS2/wheels" ]; then
  log "installing the ROS 2 launch and command-line tools from $SHARED_ROS2"
  python -m pip install -q --no-deps "$SHARED_ROS2"/wheels/*.whl "$OSRF_PYCOMMON" 2>&1 | grep -v "^WARNING: Location" || true
  if [ -d "$SHARED_ROS2/src/composition_interfaces" ]; then
    (cd "$ROOT" && colcon --log-base "$ROOT/.colcon/log" build \
        --base-paths "$SHARED_ROS2/src/composition_interfaces" \
        --build-base "$ROOT/.colcon/build" --install-base "$VENV" --merge-install \
        --cmake-args -DBUILD_TESTING=OFF --event-handlers console_direct- >/dev/null) || {
      echo "[setup] error: colcon build of composition_interfaces failed; see $ROOT/.colcon/log/latest_build" >&2
      exit 1
    }
  fi
  python -c "import launch, launch_ros, ros2cli" || { echo "[setup] error: the ROS 2 tools do not import" >&2; exit 1; }
else
  log "no $SHARED_ROS2: ros2 launch/param/lifecycle not installed (their tests skip)"
fi

log "installing rollout_ros (editable, in the ament index)"
python -m pip install -q --no-deps --no-build-isolation -e "$ROOT/rollout_ros" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import rollout_ros, rollout_ros_interfaces.srv" || { echo "[setup] error: rollout_ros import failed" >&2; exit 1; }
python "$ROOT/scripts/install_ros_layout.py" "$ROOT/rollout_ros" "$VENV"

# `source .venv/bin/activate` then gives the ros2 tools this prefix (ament index).
if ! grep -q 'rollout_ros: AMENT_PREFIX_PATH' "$VENV/bin/activate"; then
  cat >> "$VENV/bin/activate" <<'ACTIVATE'

# rollout_ros: AMENT_PREFIX_PATH names this prefix, so `ros2 launch/run/pkg` find
# rollout_ros, its interfaces and the ROS packages installed here.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
ACTIVATE
fi

echo "$want" > "$STAMP"
log "done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"

# SPDX-License-Identifier: Apache-2.0
"""A strategy's RolloutStatus as /diagnostics and as one terminal line."""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

# Worth a WARN on /diagnostics: the arm is not getting fresh actions at the set rate.
STARVED_WARN_RATIO = 0.01


def diagnostics(status, node_name: str) -> DiagnosticArray:
    level, message = DiagnosticStatus.OK, status.state
    if status.ticks and status.starved_ticks / status.ticks > STARVED_WARN_RATIO:
        level, message = DiagnosticStatus.WARN, f'{status.state}: {status.starved_ticks} starved ticks'
    if status.recorder_errors:
        level, message = DiagnosticStatus.WARN, f'{status.state}: {status.recorder_errors} recorder errors'
    if status.state == 'error':
        level = DiagnosticStatus.ERROR
    fields = (
        'strategy',
        'state',
        'phase',
        'episode',
        'num_episodes',
        'phase_time_left_s',
        'ticks',
        'rate_hz',
        'target_rate_hz',
        'period_err_p99_ms',
        'overruns',
        'starved_ticks',
        'infer_p50_ms',
        'infer_p99_ms',
        'recording',
        'episodes_saved',
        'episode_frames',
        'buffer_seconds',
        'upload_state',
        'recorder_errors',
    )
    entry = DiagnosticStatus(
        level=level,
        name=f'rollout_ros: {node_name}',
        message=message,
        hardware_id=node_name,
        values=[KeyValue(key=f, value=_text(getattr(status, f))) for f in fields],
    )
    return DiagnosticArray(header=status.header, status=[entry])


def status_line(status) -> str:
    """What an operator reads at a glance, one line, refreshed in place."""
    phase = status.phase or status.state
    if status.num_episodes:
        phase = f'episode {status.episode}/{status.num_episodes} {phase} {status.phase_time_left_s:.0f} s left'
    parts = [
        f'{status.strategy}',
        phase,
        f'ticks {status.ticks}',
        f'{status.rate_hz:5.1f}/{status.target_rate_hz:g} Hz',
        f'p99 {status.period_err_p99_ms:.1f} ms',
        f'infer {status.infer_p99_ms:.0f} ms',
        f'starved {status.starved_ticks}',
    ]
    if status.strategy != 'base':
        rec = f'REC {status.episode_frames} fr' if status.recording else 'idle'
        parts += [rec, f'episodes {status.episodes_saved}']
        if status.buffer_seconds:
            parts.append(f'buffer {status.buffer_seconds:.1f} s')
        if status.upload_state:
            parts.append(f'upload {status.upload_state}')
    return ' | '.join(parts)


def _text(value) -> str:
    return f'{value:.3f}' if isinstance(value, float) else str(value)

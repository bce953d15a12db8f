# SPDX-License-Identifier: Apache-2.0
"""Background pushes of a recording dataset to the Hugging Face Hub.

LeRobot's rollout pushes under the lock that save_episode takes, so a save
during an upload freezes the control loop for the length of the upload
(spec §2.2, §8.2), and its mid-session pushes send footerless parquet files
(§8.7). Here the caller only queues a request: one worker thread uploads,
requests that arrive meanwhile collapse into a single follow-up push, and
only finalized files go up (the writer renames each file into place when it
is complete, so anything still named *.tmp / *.partial is skipped and the
next push sends it). The steps are LeRobot's push_to_hub (§4.5): create the
repo, upload the folder without images/, the dataset card, the version tag.
"""

import json
import logging
import threading
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, HfApi, get_token
from huggingface_hub.errors import HFValidationError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id

from rollout_ros.core.errors import ConfigError

logger = logging.getLogger(__name__)

REPO_PREFIX = 'rollout_'
INFO_PATH = 'meta/info.json'
DEFAULT_CODEBASE_VERSION = 'v3.0'
# Hidden files and folders are never dataset content: the writer keeps its
# staging area, lock and orphans under .cache/huggingface/rollout_ros/. images/ is LeRobot's PNG
# staging, which its own push skips too.
IGNORE_PATTERNS = ['*.tmp', '*.partial', '*.lock', 'images/', '.*', '*/.*']
MAX_BACKOFF_S = 300.0
_ERROR_CHARS = 500


def stamp_repo_id(repo_id: str, now: datetime | None = None) -> str:
    """LeRobot's per-session name: repo_id + _YYYYmmdd_HHMMSS (local time)."""
    return f'{repo_id}_{(now or datetime.now()):%Y%m%d_%H%M%S}'


def check_repo_id(repo_id: str) -> str:
    """LeRobot refuses rollout datasets whose name lacks the rollout_ prefix,
    which keeps deployment data apart from teleoperated training data."""
    namespace, _, name = repo_id.rpartition('/')
    if not name.startswith(REPO_PREFIX):
        fix_name = f'{namespace}/{REPO_PREFIX}{name}' if namespace else f'<user>/{REPO_PREFIX}{name}'
        raise ConfigError(
            'dataset.repo_id',
            f'{repo_id!r}: rollout dataset names must start with {REPO_PREFIX!r}.',
            f'use {fix_name!r}.',
        )
    try:
        validate_repo_id(stamp_repo_id(repo_id))
    except HFValidationError as e:
        raise ConfigError(
            'dataset.repo_id',
            f'{repo_id!r} (with its date stamp) is not a valid Hub repo id: {e}',
            'use <user>/rollout_<name> with letters, digits, -, _ and .',
        ) from None
    return repo_id


class HubUploader:
    def __init__(
        self,
        root,
        repo_id: str,
        *,
        private: bool | None = False,
        token: str | None = None,
        tags=None,
        endpoint: str | None = None,
        max_retries: int = 5,
        retry_backoff_s: float = 2.0,
        license: str = 'apache-2.0',
    ):
        self.root = Path(root)
        self.repo_id = repo_id
        self.private = private
        self.tags = list(tags or [])
        self.license = license
        self.max_retries = int(max_retries)
        self.retry_backoff_s = float(retry_backoff_s)
        self._api = HfApi(endpoint=endpoint, token=token, library_name='rollout_ros')
        # Without an explicit token the client falls back on the stored
        # login, which must stay out of reports just the same.
        self._secret = token or get_token()
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._pending = False
        self._reasons: list[str] = []
        self._closing = False
        self._state = 'idle'
        self._pushes_done = 0
        self._failures = 0
        self._last_error = None
        self._last_push_s = None
        self._last_push_at = None
        self._worker = threading.Thread(target=self._run, name=f'hub-push:{repo_id}', daemon=True)
        self._worker.start()

    def request_push(self, reason: str = '') -> bool:
        """Never blocks. True when this starts a new pending push, False when
        it joins one already waiting (or the uploader is closed)."""
        with self._cond:
            if self._closing:
                logger.warning('hub: push of %s requested after close (%s); ignored', self.repo_id, reason)
                return False
            new = not self._pending
            self._pending = True
            if reason:
                self._reasons.append(reason)
            self._cond.notify_all()
            return new

    def status(self) -> dict:
        """state: idle | uploading | retrying | failed (the last push gave up;
        the next request starts over); last_push_s: how long the last
        successful push took, last_push_at: when it ended (epoch s); pending:
        a follow-up push is queued."""
        with self._cond:
            return {
                'repo_id': self.repo_id,
                'state': self._state,
                'pushes_done': self._pushes_done,
                'failures': self._failures,
                'last_error': self._last_error,
                'last_push_s': self._last_push_s,
                'last_push_at': self._last_push_at,
                'pending': self._pending,
            }

    def close(self, final_push: bool = True, timeout_s: float = 60.0) -> bool:
        """Waits for the worker, after one last push if asked. False when it
        did not finish in time: the upload is then abandoned (no more
        attempts), never the local data."""
        with self._cond:
            if final_push and not self._closing:
                self._pending = True
                self._reasons.append('final')
            self._closing = True
            self._cond.notify_all()
        self._worker.join(timeout_s)
        if self._worker.is_alive():
            self._abort.set()
            logger.warning('hub: push of %s still running after %.0f s; giving up on it', self.repo_id, timeout_s)
            return False
        return True

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, '***') if self._secret else text

    def _set(self, **fields) -> None:
        with self._cond:
            for key, value in fields.items():
                setattr(self, f'_{key}', value)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending or self._abort.is_set():
                    return
                self._pending = False
                reasons, self._reasons = self._reasons, []
            self._push_with_retries(', '.join(dict.fromkeys(reasons)) or 'requested')

    def _push_with_retries(self, reason: str) -> None:
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            self._set(state='uploading')
            t0 = time.monotonic()
            try:
                pushed = self._push_once(reason)
            except Exception as e:  # any failure of a push is reported and retried, never raised into the recorder
                error = self._scrub(f'{type(e).__name__}: {e}')[:_ERROR_CHARS]
                self._set(last_error=error)
                if attempt == attempts or self._abort.is_set():
                    self._set(state='failed', failures=self._failures + 1)
                    logger.error('hub: push of %s failed after %d attempt(s): %s', self.repo_id, attempt, error)
                    return
                delay = min(self.retry_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                self._set(state='retrying')
                logger.warning(
                    'hub: push of %s failed (attempt %d/%d), retrying in %.1f s: %s',
                    self.repo_id,
                    attempt,
                    attempts,
                    delay,
                    error,
                )
                if self._abort.wait(delay):
                    self._set(state='failed', failures=self._failures + 1)
                    return
                continue
            elapsed = time.monotonic() - t0
            if pushed:
                self._set(
                    state='idle',
                    last_error=None,
                    pushes_done=self._pushes_done + 1,
                    last_push_s=round(elapsed, 3),
                    last_push_at=time.time(),
                )
                logger.info('hub: pushed %s in %.1f s (%s)', self.repo_id, elapsed, reason)
            else:
                self._set(state='idle')
            return

    def _push_once(self, reason: str) -> bool:
        info_file = self.root / INFO_PATH
        if not info_file.is_file():
            # LeRobot skips pushes of a dataset with no saved episode; without
            # info.json the Hub copy would not load.
            logger.info('hub: %s has no %s yet; nothing to push (%s)', self.root, INFO_PATH, reason)
            return False
        info = json.loads(info_file.read_text())
        api, repo = self._api, self.repo_id
        api.create_repo(repo, repo_type='dataset', private=self.private, exist_ok=True)
        api.upload_folder(
            repo_id=repo,
            folder_path=self.root,
            repo_type='dataset',
            ignore_patterns=IGNORE_PATTERNS,
            commit_message=f'rollout_ros push ({reason})',
        )
        api.upload_file(
            path_or_fileobj=self._card(info).encode(),
            path_in_repo='README.md',
            repo_id=repo,
            repo_type='dataset',
            commit_message='Dataset card',
        )
        # The tag names the format the data is in, which is what info.json says.
        tag = info.get('codebase_version') or DEFAULT_CODEBASE_VERSION
        with suppress(RevisionNotFoundError):
            api.delete_tag(repo, tag=tag, repo_type='dataset')
        api.create_tag(repo, tag=tag, repo_type='dataset')
        return True

    def _card(self, info: dict) -> str:
        try:
            from lerobot.datasets.utils import DatasetInfo, create_lerobot_dataset_card

            card = create_lerobot_dataset_card(
                tags=self.tags, dataset_info=DatasetInfo.from_dict(info), license=self.license, repo_id=self.repo_id
            )
        except Exception as e:  # lerobot missing, or an info.json it does not take: a card must not stop a push
            logger.warning('hub: LeRobot dataset card unavailable (%s); pushing a minimal card', e)
            data = DatasetCardData(license=self.license, tags=['LeRobot', *self.tags], task_categories=['robotics'])
            card = DatasetCard(
                f'---\n{data.to_yaml()}\n---\n\nRecorded with rollout_ros for '
                f'[LeRobot](https://github.com/huggingface/lerobot).\n'
            )
        return str(card)

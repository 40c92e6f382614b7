"""An Ansible callback that records which playbook and task files run (an observer: it changes
nothing). The install tests enable it through the environment (ANSIBLE_CALLBACK_PLUGINS,
ANSIBLE_CALLBACKS_ENABLED=nodebook_paths), so it sees ansible-playbook whether the driver runs
it directly or through ansible-runner; it appends JSON lines to $NODEBOOK_TEST_PATHS_LOG."""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "nodebook_paths"
    CALLBACK_NEEDS_ENABLED = True

    def _log(self, **entry):
        with open(os.environ["NODEBOOK_TEST_PATHS_LOG"], "a") as log:
            log.write(json.dumps(entry) + "\n")

    def v2_playbook_on_start(self, playbook):
        self._log(playbook=os.path.abspath(playbook._file_name))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._log(task=task.get_path())

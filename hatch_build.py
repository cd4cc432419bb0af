"""Hatch build hook: the expectation suites go into the wheel as ``govbank/expectations``.

The runtime validates with them, so an installed wheel must carry them; the checkout
keeps them in ``expectations/`` at the top, where operators and tests find them. An
editable install reads them from the checkout instead (govbank.config.settings), so no
stale copy lands in site-packages.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class SuitesHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version != "editable":
            build_data["force_include"]["expectations"] = "govbank/expectations"

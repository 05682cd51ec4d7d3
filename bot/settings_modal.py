"""`/pixelbot settings`: a modal where a channel's admins set its instructions, model, tools, listening
and retention.

Who may: workspace admins and owners, `PIXELBOT_ADMINS`, and the channel's creator (in a direct
message with the bot, its one human). The rights are checked when the modal opens (`views.open`, which
must come within 3 s of the command: Slack's trigger IDs expire) and again when it is submitted.

A submission (`view_submission`, screened at the edge) is checked field by field before anything is
kept; a wrong field is shown under that field in the modal (`response_action: errors`) and nothing
else changes. A good one closes the modal at once; the change is then applied on a pool thread
(listening first, since the channel must be told and the bot may not be in it; then the audit and the
settings row) and the user hears back in the channel, visible to them only.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    Block,
    CheckboxesElement,
    InputBlock,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    RadioButtonsElement,
    SectionBlock,
    StaticMultiSelectElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from agent.channel_config import ChannelConfig
from bot.channel_settings import MAX_INSTRUCTIONS, ChannelSettings, SettingsError
from bot.channels import ChannelAgents, ChannelKey
from bot.exports import is_admin
from bot.listening import ListeningChannels

logger = logging.getLogger(__name__)

SETTINGS_VIEW = "pixelbot_settings"  # the modal's callback_id
VALUE = "value"  # every input's action_id
DEFAULT_MODEL_OPTION = "default"
MAX_CHECKBOXES = 10  # Slack's limit for a checkboxes element; more tools get a multi-select
SETTINGS_NOT_ALLOWED = (
    "Sorry, only workspace admins, pixelbot admins and the channel's creator can change its settings."
)
SETTINGS_EXPIRED = "That took me too long to open; please try `/pixelbot settings` again."
SETTINGS_FAILED = ":warning: Your settings were not saved; an admin can find the details in the logs."
SETTINGS_SAVED = ":gear: Settings saved: {changes}. They apply from the next message on."
SETTINGS_UNCHANGED = "Nothing changed."


@dataclass(frozen=True)
class Submission:
    """What a submitted modal asks for, read from its state."""

    channel: ChannelKey
    user: str
    instructions: str
    model: str  # "" for the default
    enabled_tools: list[str] | None  # None: the modal had no tools field
    listening: bool | None  # None: the modal had no listening field
    retention: str


class SettingsModal:
    """Opens the modal, and applies what is submitted through `ChannelSettings`."""

    def __init__(
        self,
        client: WebClient,
        settings: ChannelSettings,
        listening: ListeningChannels,
        agents: ChannelAgents,
        admins: frozenset[str],
        listen_admins_only: bool,
        storage: Executor,
    ) -> None:
        self._client, self._settings, self._listening, self._agents = client, settings, listening, agents
        self._admins, self._listen_admins_only, self._storage = admins, listen_admins_only, storage

    # -- opening ------------------------------------------------------------------------------------
    def open(self, channel: ChannelKey, user: str, trigger_id: str) -> str | None:
        """Open the modal for `user`; None if it opened, else what to tell them."""
        if not self.may_configure(channel, user):
            logger.warning("/pixelbot settings refused: %s may not configure %s", user, channel.channel_id)
            return SETTINGS_NOT_ALLOWED
        config = self._storage.submit(self._settings.config, channel).result()
        state = self._listening.state(channel)
        with_listening = not self._listen_admins_only or is_admin(self._client, self._admins, user, channel)
        view = self.view(channel, config, state is not None and state.on, with_listening)
        try:
            self._client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as error:
            code = error.response.get("error")
            logger.warning("views.open failed for %s: %s", channel.channel_id, code)
            return SETTINGS_EXPIRED if code in ("expired_trigger_id", "invalid_trigger_id") else SETTINGS_FAILED
        return None

    def may_configure(self, channel: ChannelKey, user: str) -> bool:
        """Workspace admins, `PIXELBOT_ADMINS`, the channel's creator; in a DM with the bot, its human."""
        if is_admin(self._client, self._admins, user, channel):
            return True
        try:
            info = self._client.conversations_info(channel=channel.channel_id)["channel"]
        except SlackApiError as error:
            logger.warning("conversations.info failed for %s: %s", channel.channel_id, error.response.get("error"))
            return False
        if info.get("is_im"):
            return bool(info.get("user") == user)
        return bool(info.get("creator") == user)

    def view(self, channel: ChannelKey, config: ChannelConfig, listening: bool, with_listening: bool) -> View:
        """The modal, showing what is in force (defaults named as such)."""
        defaults = self._settings.defaults
        blocks: list[Block] = [
            SectionBlock(
                text=f"Settings of <#{channel.channel_id}>. What you leave on *default* follows the bot's "
                "configuration, and changes with it."
            ),
            InputBlock(
                block_id="instructions",
                label="Instructions for this channel",
                optional=True,
                hint="Added to the system prompt, e.g. “Answer in French” or “We are the payments team.”",
                element=PlainTextInputElement(
                    action_id=VALUE,
                    multiline=True,
                    max_length=MAX_INSTRUCTIONS,
                    initial_value=config.instructions or None,
                ),
            ),
            InputBlock(block_id="model", label="Model", element=self._model_select(config)),
        ]
        if defaults.tool_names:
            blocks.append(self._tools_input(config))
        if with_listening:
            blocks.append(_listening_input(listening))
        default_days = f"{defaults.retention_days} days" if defaults.retention_days else "keep everything"
        blocks.append(
            InputBlock(
                block_id="retention",
                label="Keep messages for (days)",
                optional=True,
                hint=f"Older messages are deleted every day. Empty: the default ({default_days}).",
                element=NumberInputElement(
                    action_id=VALUE,
                    is_decimal_allowed=False,
                    min_value="1",
                    initial_value=str(config.retention_days) if config.retention_days else None,
                ),
            )
        )
        metadata = json.dumps({"team": channel.team_id, "channel": channel.channel_id})
        return View(
            type="modal",
            callback_id=SETTINGS_VIEW,
            title="Channel settings",
            submit="Save",
            close="Cancel",
            private_metadata=metadata,
            blocks=blocks,
        )

    def _model_select(self, config: ChannelConfig) -> StaticSelectElement:
        defaults = self._settings.defaults
        options = [Option(value=DEFAULT_MODEL_OPTION, label=f"Default ({defaults.model})")]
        options += [Option(value=model, label=model) for model in defaults.models if model != defaults.model]
        chosen = config.model if config.model in defaults.models else ""
        initial = next((o for o in options if o.value == chosen), options[0])
        return StaticSelectElement(action_id=VALUE, options=options, initial_option=initial)

    def _tools_input(self, config: ChannelConfig) -> InputBlock:
        names = self._settings.defaults.tool_names
        options = [Option(value=name, label=name) for name in names]
        enabled = [option for option in options if option.value not in config.disabled_tools] or None
        element: CheckboxesElement | StaticMultiSelectElement
        if len(options) <= MAX_CHECKBOXES:
            element = CheckboxesElement(action_id=VALUE, options=options, initial_options=enabled)
        else:
            element = StaticMultiSelectElement(action_id=VALUE, options=options, initial_options=enabled)
        return InputBlock(block_id="tools", label="Tools the agent may use", optional=True, element=element)

    # -- submitting ---------------------------------------------------------------------------------
    def submitted(self, submission: Submission) -> tuple[ChannelConfig | None, dict[str, str]]:
        """The settings to apply, or the errors to show in the modal, by block."""
        try:
            config = self._settings.validated(
                submission.channel,
                submission.instructions,
                submission.model,
                submission.enabled_tools,
                submission.retention,
            )
        except SettingsError as error:
            logger.info("settings of %s refused: %s", submission.channel.channel_id, error)
            return None, error.errors
        return config, {}

    def apply(self, submission: Submission, config: ChannelConfig) -> None:
        """Check the rights again, apply, and tell the user; never raises (a failure is logged and told)."""
        key, user = submission.channel, submission.user
        try:
            reply = self._apply(submission, config)
        except Exception:
            logger.exception("applying the settings of %s failed", key.channel_id)
            reply = SETTINGS_FAILED
        self._tell(key, user, reply)

    def _apply(self, submission: Submission, config: ChannelConfig) -> str:
        key, user = submission.channel, submission.user
        if not self.may_configure(key, user):
            logger.warning("settings submission refused: %s may not configure %s", user, key.channel_id)
            return SETTINGS_NOT_ALLOWED
        also: dict[str, Any] = {}
        if submission.listening is not None:
            was = self._listening.state(key)
            if (was is not None and was.on) != submission.listening:
                if self._listen_admins_only and not is_admin(self._client, self._admins, user, key):
                    return SETTINGS_NOT_ALLOWED
                refusal = self._listening.switch_announced(self._client, key, submission.listening, user)
                if refusal is not None:  # first: nothing else is changed if the channel can't be told
                    return refusal
                also["listening"] = {"from": not submission.listening, "to": submission.listening}
        agent = self._storage.submit(self._agents.get, key).result()
        change = self._storage.submit(self._settings.change, key, config, user, agent, also).result()
        if change is None:
            return SETTINGS_UNCHANGED
        return SETTINGS_SAVED.format(
            changes="; ".join(_said(name, value["to"]) for name, value in change.changes.items())
        )

    def _tell(self, key: ChannelKey, user: str, text: str) -> None:
        try:
            self._client.chat_postEphemeral(channel=key.channel_id, user=user, text=text)
        except SlackApiError as error:
            logger.warning("could not tell %s about their settings: %s", user, error.response.get("error"))


def _listening_input(on: bool) -> InputBlock:
    options = [
        Option(value="on", label="On: remember every message of the channel"),
        Option(value="off", label="Off: remember only what mentions me"),
    ]
    return InputBlock(
        block_id="listening",
        label="Listening",
        element=RadioButtonsElement(action_id=VALUE, options=options, initial_option=options[0 if on else 1]),
    )


def _said(name: str, value: Any) -> str:
    """One change in words."""
    if name == "instructions":
        return "new instructions" if value else "instructions removed"
    if name == "model":
        return f"model *{value}*" if value else "the default model"
    if name == "disabled_tools":
        return f"tools off: {', '.join(value)}" if value else "every tool on"
    if name == "retention_days":
        return f"messages kept {value} days" if value else "the default retention"
    if name == "listening":
        return f"listening {'on' if value else 'off'}"
    return name


def read_submission(body: dict[str, Any]) -> Submission | None:
    """The submission in a `view_submission` payload (as the edge admitted it); None if it doesn't
    name a channel (it did not come from a modal the bot opened)."""
    view = body.get("view") or {}
    try:
        where = json.loads(view.get("private_metadata") or "{}")
        channel = ChannelKey(str(where.get("team")), str(where.get("channel")))
    except (ValueError, TypeError, AttributeError):
        return None
    values = (view.get("state") or {}).get("values") or {}

    def field(block: str) -> dict[str, Any] | None:
        value = (values.get(block) or {}).get(VALUE)
        return value if isinstance(value, dict) else None

    model = ((field("model") or {}).get("selected_option") or {}).get("value") or DEFAULT_MODEL_OPTION
    tools = field("tools")
    listening = field("listening")
    return Submission(
        channel=channel,
        user=str((body.get("user") or {}).get("id", "")),
        instructions=str((field("instructions") or {}).get("value") or ""),
        model="" if model == DEFAULT_MODEL_OPTION else str(model),
        enabled_tools=[str(o.get("value")) for o in tools.get("selected_options") or []] if tools else None,
        listening=((listening.get("selected_option") or {}).get("value") == "on") if listening else None,
        retention=str((field("retention") or {}).get("value") or ""),
    )


def register_settings(app: App, modal: SettingsModal, io: Executor) -> None:
    """The modal's submission: checked before the ack (errors go back into the modal), applied after."""

    @app.view(SETTINGS_VIEW)
    def on_submit(ack: Ack, body: dict[str, Any]) -> None:
        submission = read_submission(body)
        if submission is None:
            logger.warning("a settings submission without its channel; ignored")
            ack()
            return
        config, errors = modal.submitted(submission)
        if config is None:
            ack(response_action="errors", errors=errors)
            return
        ack()
        io.submit(modal.apply, submission, config)

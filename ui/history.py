"""The signed-in person's stored conversations in the sidebar: reopen one, delete one or all,
download everything the bot keeps about them. The bot keeps each conversation for as long as
its most sensitive message allows; the list says until when."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from ui.client import BotClient, BotRequestError, BotUnavailableError

TITLE_CHARS = 48
# Markdown that a button label would render (links, images, emphasis, code, emoji shortcodes).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def plain(text: str) -> str:
    """``text`` shown as it is in a label: every Markdown character escaped (a title is the
    person's own question, and a label renders images and links)."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def short_title(conversation: dict[str, Any], timezone: object = None) -> str:
    """The first question, shortened; when the bot cannot read it (stored under an earlier
    key), when the conversation began."""
    title = " ".join(str(conversation.get("title") or "").split())
    if not title:
        return local_time(conversation.get("created_at"), timezone) or "…"
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def local_time(value: object, timezone: object = None) -> str:
    """An ISO timestamp from the bot as "2026-05-02 14:30" in the browser's time zone (UTC when
    it is not known); "" for anything else."""
    if not isinstance(value, str):
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    zone: Any = UTC
    if isinstance(timezone, str) and timezone:
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = UTC
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def to_messages(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stored conversation's messages as the chat keeps them: an answer carries its result
    (badge, sources) as it came from the bot."""
    out: list[dict[str, Any]] = []
    for m in stored:
        content = str(m.get("content") or "")
        if m.get("role") == "assistant":
            result = {k: v for k, v in m.items() if k not in ("role", "content")}
            result["answer"] = content
            result.setdefault("citations", [])
            out.append({"role": "assistant", "content": content, "result": result})
        elif m.get("role") == "user":
            out.append({"role": "user", "content": content})
    return out


def _export(client: BotClient, t: Callable[[str], str]) -> Callable[[], bytes]:
    def data() -> bytes:
        try:
            return client.export()
        except (BotRequestError, BotUnavailableError):
            return json.dumps({"error": t("history_failed")}, ensure_ascii=False).encode()

    return data


def _entry(client: BotClient, t: Callable[[str], str], ss: Any, c: dict[str, Any],
           timezone: object) -> None:
    """One conversation: its title reopens it, the bin deletes it, a caption says until when
    it is kept."""
    cid = str(c["id"])
    current = cid == ss.get("conversation_id")
    left, right = st.columns([5, 1], vertical_alignment="center")
    if left.button(plain(short_title(c, timezone)), key=f"conv_{cid}", width="stretch",
                   type="primary" if current else "secondary"):
        try:
            stored = client.conversation(cid).get("messages", [])
        except BotRequestError as exc:
            if exc.status == 401:
                raise
            st.error(t("history_failed"))  # gone meanwhile, or not readable
        else:
            ss.messages = to_messages(stored)
            ss.conversation_id, ss.not_kept = cid, False
            st.rerun()
    if right.button("", icon=":material/delete:", key=f"del_{cid}", help=t("delete")):
        try:
            client.delete_conversation(cid)
        except BotRequestError as exc:
            if exc.status != 404:  # already gone is what was asked
                raise
        if current:
            ss.messages, ss.conversation_id = [], None
        st.toast(t("deleted"))
        st.rerun()
    until = local_time(c.get("expires_at"), timezone)
    if until:
        st.caption(t("kept_until").format(date=until))


def _delete_all(client: BotClient, t: Callable[[str], str], ss: Any) -> None:
    """"Delete all", asked to confirm first."""
    if not ss.get("confirm_delete_all"):
        if st.button(t("delete_all"), key="delete_all"):
            ss.confirm_delete_all = True
            st.rerun()
        return
    st.warning(t("delete_all_confirm"))
    yes, no = st.columns(2)
    if yes.button(t("delete_all_yes"), key="delete_all_yes", type="primary"):
        client.delete_conversations()
        ss.confirm_delete_all, ss.messages, ss.conversation_id = False, [], None
        st.toast(t("deleted"))
        st.rerun()
    if no.button(t("cancel"), key="delete_all_no"):
        ss.confirm_delete_all = False
        st.rerun()


def sidebar(client: BotClient, t: Callable[[str], str], ss: Any, timezone: object = None
            ) -> None:
    """The history section. Raises BotRequestError (a 401 when the sign-in has expired) and
    BotUnavailableError for the caller to handle."""
    st.subheader(t("history"))
    rows = client.conversations()
    if not rows:
        st.caption(t("no_history"))
    for c in rows:
        _entry(client, t, ss, c, timezone)
    if rows:
        _delete_all(client, t, ss)
    st.download_button(t("export"), data=_export(client, t), file_name="gbg-assist-data.json",
                       mime="application/json", key="export", on_click="ignore")

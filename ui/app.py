"""gbg-assist chat (Streamlit): tourists and residents, and signed-in home-care staff.

Run with `gbg ui` (or `./scripts/up`); talks to the bot at GBG_UI__BOT_URL over HTTP only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import streamlit as st

from ui import admin
from ui.client import BotClient, BotRequestError, BotUnavailableError, role_of
from ui.safe import no_images, no_images_stream
from ui.texts import EXAMPLES, T, badge_text

BOT_URL = os.environ.get("GBG_UI__BOT_URL", "http://127.0.0.1:8000")
REPORTS = Path(os.environ.get("GBG_UI__REPORTS_DIR", "reports"))

st.set_page_config(page_title="Göteborgs Stad – digital assistent", page_icon="💬",
                   layout="centered")

ss = st.session_state
ss.setdefault("lang", "sv")
ss.setdefault("messages", [])  # {"role", "content", "result"?}
ss.setdefault("api_key", None)
ss.setdefault("role", "public")
ss.setdefault("pending", None)
ss.setdefault("admin", False)

# Streamlit's captions are drawn at 60 % opacity (about 3.9:1 on white); the answer's badge and
# the request id are captions, so raise them to WCAG AA contrast (at least 4.5:1).
st.markdown("<style>[data-testid='stCaptionContainer']{opacity:1;color:#3d4451}</style>",
            unsafe_allow_html=True)


def t(key: str) -> str:
    return T[ss.lang][key]


def client_ip() -> str | None:
    """The end user's address, passed on so that the bot limits each user, not the UI."""
    try:
        ip = getattr(st.context, "ip_address", None)
    except Exception:  # no browser session
        return None
    return ip if isinstance(ip, str) and ip else None  # AppTest gives a mock


def client(key: str | None = None) -> BotClient:
    return BotClient(BOT_URL, key or ss.api_key, client_ip=client_ip())


def is_admin(key: str) -> bool:
    try:
        client(key).audit(limit=1)
        return True
    except (BotRequestError, BotUnavailableError):
        return False


# --- sidebar: language, sign-in, navigation ------------------------------------------------------

with st.sidebar:
    choice = st.radio("Språk / Language", ["Svenska", "English"],
                      index=0 if ss.lang == "sv" else 1, horizontal=True, key="lang_choice")
    ss.lang = "sv" if choice == "Svenska" else "en"
    pages = [t("chat"), t("corpora"), t("evaluation")] + ([t("audit")] if ss.admin else [])
    page = st.radio(t("page"), pages, key="page")
    st.divider()
    if ss.api_key:
        who = t("role_" + ss.role) + (f" · {t('admin')}" if ss.admin else "")
        st.success(f"{t('signed_in_as')}: **{who}**")
        if st.button(t("sign_out"), key="sign_out"):
            ss.api_key, ss.role, ss.messages, ss.admin = None, "public", [], False
            st.rerun()
    else:
        st.caption(t("staff_sign_in"))
        key = st.text_input(t("api_key"), type="password", key="key_input")
        if st.button(t("sign_in"), key="sign_in") and key:
            try:
                corpora = client(key).corpora()
                ss.api_key, ss.role, ss.messages = key, role_of(corpora), []
                ss.admin = is_admin(key)
                st.rerun()
            except BotRequestError:
                st.error(t("bad_key"))
            except BotUnavailableError:
                st.error(t("bot_down").format(url=BOT_URL))
    if st.button(t("new_conversation"), key="new_conversation"):
        ss.messages = []
        st.rerun()


def render_result(result: dict[str, Any]) -> None:
    if result.get("notice"):
        st.info(result["notice"])
    st.caption(badge_text(ss.lang, result))
    for c in result.get("citations", []):
        with st.expander(f"[{c['number']}] {c['title']}"):
            st.markdown(f"_{c['section']}_")
            st.markdown(no_images(c["snippet"]))
            link = c.get("url") or c.get("source")
            st.markdown(f"{t('source')}: `{c['corpus']}` · {link}")
    rid = result.get("request_id")
    if rid:
        rating = st.feedback("thumbs", key=f"fb_{rid}")
        comment = st.text_input(t("comment"), key=f"fbc_{rid}", label_visibility="collapsed",
                                placeholder=t("comment"))
        if rating is not None and not ss.get(f"sent_{rid}"):
            try:
                client().feedback(rid, str(result.get("feedback_token", "")),
                                  1 if rating == 1 else -1, comment)
                ss[f"sent_{rid}"] = True
                st.toast(t("thanks"))
            except (BotRequestError, BotUnavailableError):
                st.warning(t("feedback_failed"))
        st.caption(f"{t('request_id')}: `{rid}`")


def show_examples() -> None:
    """Example questions as buttons; a click asks it on the next run."""
    st.write(t("examples"))
    cols = st.columns(2)
    for i, q in enumerate(EXAMPLES[ss.role][ss.lang]):
        if cols[i % 2].button(q, key=f"ex_{i}"):
            ss.pending = q
            st.rerun()


def show_conversation() -> None:
    for m in ss.messages:
        with st.chat_message(m["role"]):
            result = m.get("result")
            if result and result.get("refused"):
                st.warning(no_images(m["content"]))
            else:
                st.markdown(no_images(m["content"]))
            if result:
                render_result(result)


def stream_answer(history: list[dict[str, str]]) -> dict[str, Any] | None:
    """The answer streamed into an assistant message; its final event, or None after an error
    (which is shown)."""
    final: dict[str, Any] = {}

    def tokens() -> Iterator[str]:
        for kind, data in client().chat_stream(history[-20:]):
            if kind == "token":
                yield data["text"]
            elif kind == "final":
                final.update(data)

    with st.chat_message("assistant"):
        try:
            st.write_stream(no_images_stream(tokens()))
        except BotUnavailableError:
            st.error(t("bot_down").format(url=BOT_URL))
            return None
        except BotRequestError as exc:
            st.error(f"{t('error')}: {exc.detail}")
            return None
    return final


def ask(question: str) -> None:
    ss.pending = None
    ss.messages.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(no_images(question))
    history = [{"role": m["role"], "content": m["content"]} for m in ss.messages]
    final = stream_answer(history)
    if final is None:
        return
    if final:
        ss.messages.append({"role": "assistant", "content": final["answer"], "result": final})
    st.rerun()


def chat_page() -> None:
    st.title(t("title"))
    st.info(t("ai_notice"), icon="🤖")
    if not client().healthy():
        st.error(t("bot_down").format(url=BOT_URL))
        return
    if not ss.messages:
        show_examples()
    show_conversation()
    question = st.chat_input(t("placeholder")) or ss.pending
    if question:
        ask(question)


def corpora_page() -> None:
    st.title(t("corpora"))
    try:
        rows = client().corpora()
    except (BotUnavailableError, BotRequestError):
        st.error(t("bot_down").format(url=BOT_URL))
        return
    st.dataframe(
        [{k: r.get(k) for k in ("name", "title", "audience", "sensitivity", "documents",
                                "chunks", "last_ingest")} for r in rows],
        hide_index=True, width="stretch",
    )


if page == t("chat"):
    chat_page()
elif page == t("corpora"):
    corpora_page()
elif page == t("audit") and ss.admin:
    admin.audit_page(client(), t)
else:
    admin.evaluation_page(REPORTS, t)

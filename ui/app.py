"""gbg-assist chat (Streamlit): tourists and residents, and signed-in home-care staff.

Run with `gbg ui` (or `./scripts/up`); talks to the bot at GBG_UI__BOT_URL over HTTP only.

Staff sign in with the city's OpenID Connect provider (Streamlit's st.login, configured by `gbg ui`
in a secrets file); the UI then sends the person's ID token to the bot, which decides their role
and keeps their conversations (the history in the sidebar). The API-key field stays for
development or without an identity provider (``auth.api_key_field``).

The page speaks the platform's 14 languages (texts from gbg.i18n): the browser's language until
the user chooses one; Arabic and Persian lay the page out right to left. The answers are in the
question's language, which the bot detects (the UI never asks for a language), and each is shown
in its own language's direction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import streamlit as st

from gbg.settings import Settings
from ui import admin, history
from ui.client import BotClient, BotRequestError, BotUnavailableError
from ui.safe import no_images, no_images_stream
from ui.texts import (
    badge_text,
    direction,
    examples,
    initial_language,
    language_codes,
    native_name,
    text_direction,
)
from ui.texts import t as catalogue_text

BOT_URL = os.environ.get("GBG_UI__BOT_URL", "http://127.0.0.1:8000")
REPORTS = Path(os.environ.get("GBG_UI__REPORTS_DIR", "reports"))

# Each text in its own direction, whatever the UI's language: an answer (key "dir-rtl-msg-…" or
# "dir-ltr-msg-…") in its language's direction, a question or a source card in the direction of
# its first letter. Inside them every paragraph also takes the direction of its own first letter
# (unicode-bidi: plaintext), so a Swedish passage quoted in an Arabic answer reads left to right,
# and a line break in an answer or a question starts a new line (and a new direction).
# Streamlit aligns Markdown left; "start" is left in a left-to-right box, right in an RTL one.
DIRECTION_CSS = """<style>
[class*="st-key-dir-rtl-"]{direction:rtl}
[class*="st-key-dir-ltr-"]{direction:ltr}
[class*="st-key-dir-"] :is(p,li,h1,h2,h3,h4,h5,h6,th,td){unicode-bidi:plaintext;text-align:start}
[class*="st-key-dir-"][class*="-msg-"] p{white-space:pre-line}
:is(.stMain,.stSidebar) :is(.stMarkdown,.stHeading)
  :is([data-testid="stMarkdownContainer"],[data-testid="stCaptionContainer"])
  :is(p,ul,ol,li,h1,h2,h3,h4,h5,h6){text-align:start}
</style>"""
# An RTL language (Arabic, Persian) mirrors the layout, not only the text: the main area (in
# Streamlit 1.67 a <main class="stMain"> holding the page and, at its bottom, the chat input) and
# the sidebar run right to left, so chat bubbles, the input box and the source cards follow.
RTL_CSS = """<style>
.stMain,[data-testid="stMain"],.stSidebar,[data-testid="stSidebar"]{direction:rtl}
</style>"""

ss = st.session_state


def browser_locale() -> object:
    """The browser's language (navigator.language, "ar-SA"), None without a browser."""
    try:
        return st.context.locale
    except Exception:  # no browser session
        return None


# The UI's language: the browser's until the user chooses one, then the user's choice.
if not ss.get("lang_chosen") or ss.get("lang_choice") not in language_codes():
    ss.lang_choice = initial_language(browser_locale())
ss.lang = ss.lang_choice


def t(key: str) -> str:
    return catalogue_text(key, ss.lang)


st.set_page_config(page_title=t("title"), page_icon="💬", layout="centered")
ss.setdefault("messages", [])  # {"role", "content", "result"?}
ss.setdefault("api_key", None)
ss.setdefault("role", "public")
ss.setdefault("pending", None)
ss.setdefault("admin", False)
ss.setdefault("token", None)  # the signed-in person's ID token, once the bot has accepted it
ss.setdefault("me", None)  # the bot's /v1/me for that person
ss.setdefault("expired", False)  # the bot refused the token: signed out until a new sign-in
ss.setdefault("conversation_id", None)  # the stored conversation the chat continues
ss.setdefault("not_kept", False)  # the bot did not store the current conversation

# Streamlit's captions are drawn at 60 % opacity (about 3.9:1 on white); the answer's badge and
# the request id are captions, so raise them to WCAG AA contrast (at least 4.5:1).
st.markdown("<style>[data-testid='stCaptionContainer']{opacity:1;color:#3d4451}</style>",
            unsafe_allow_html=True)
st.markdown(DIRECTION_CSS, unsafe_allow_html=True)
if direction(ss.lang) == "rtl":
    st.markdown(RTL_CSS, unsafe_allow_html=True)


def client_ip() -> str | None:
    """The end user's address, passed on so that the bot limits each user, not the UI."""
    try:
        ip = getattr(st.context, "ip_address", None)
    except Exception:  # no browser session
        return None
    return ip if isinstance(ip, str) and ip else None  # AppTest gives a mock


def client(key: str | None = None) -> BotClient:
    return BotClient(BOT_URL, key or ss.api_key, client_ip=client_ip(),
                     token=None if key else ss.token)


# --- OpenID Connect sign-in ----------------------------------------------------------------------

def oidc_configured() -> bool:
    """Sign-in is offered when the secrets file has Streamlit's [auth] section."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def api_key_field() -> bool:
    """The API-key field: when the settings say so, else only without an identity provider.
    Settings that do not validate show it only without one too (the bot reports them)."""
    try:
        chosen = Settings().auth.api_key_field
    except ValueError:
        chosen = None
    return (not OIDC) if chosen is None else chosen


def oidc_user() -> dict[str, Any] | None:
    """The signed-in person's claims (st.user), None when nobody is signed in."""
    try:
        user = st.user.to_dict()
    except Exception:  # no sign-in configured, or no browser session
        return None
    return user if user.get("is_logged_in") else None


def expire() -> None:
    """The bot no longer accepts the person's token (it expired): everything of theirs goes
    from the session and they are asked to sign in again."""
    ss.token, ss.me, ss.role, ss.admin, ss.expired = None, None, "public", False, True
    ss.messages, ss.conversation_id, ss.not_kept = [], None, False


def refresh_identity(user: dict[str, Any] | None) -> None:
    """Ask the bot who the signed-in person is when their token is new to this session."""
    tokens = user.get("tokens") if user else None
    token = tokens.get("id") if isinstance(tokens, dict) else None
    if not token or ss.expired or token == ss.token:
        return
    try:
        me = BotClient(BOT_URL, token=token, client_ip=client_ip()).me()
    except BotRequestError as exc:
        if exc.status == 401:
            expire()
        return
    except BotUnavailableError:
        return  # anonymous until the bot answers; the chat page says it is down
    ss.token, ss.me, ss.api_key = token, me, None
    ss.role, ss.admin = str(me.get("role", "public")), bool(me.get("admin"))


def signed_in() -> bool:
    """Signed in with OpenID Connect and accepted by the bot."""
    return bool(ss.token and ss.me)


def sign_out() -> None:
    """Forget the person here, then end the sign-in (Streamlit's cookie and, where the provider
    offers it, the provider's session)."""
    ss.token, ss.me, ss.role, ss.admin, ss.api_key = None, None, "public", False, None
    ss.messages, ss.conversation_id, ss.not_kept, ss.confirm_delete_all = [], None, False, False
    st.logout()
    st.stop()  # a rerun would drop the redirect to the sign-out from the browser's queue


OIDC = oidc_configured()
USER = oidc_user() if OIDC else None
refresh_identity(USER)


# --- sidebar: language, sign-in, navigation ------------------------------------------------------

def choose_language() -> None:
    ss.lang_chosen = True  # from now on the user's choice, not the browser's language


def page_choice() -> str:
    """The page chosen in the sidebar ("chat", "corpora", "evaluation", "audit"); it stays
    chosen when the language (and so the radio's labels) changes."""
    ids = ["chat", "corpora", "evaluation"] + (["audit"] if ss.admin else [])
    labels = [t(i) for i in ids]
    if ss.get("page") not in labels:
        ss.page = t(ss.page_id) if ss.get("page_id") in ids else labels[0]
    ss.page_id = ids[labels.index(st.radio(t("page"), labels, key="page"))]
    return str(ss.page_id)


def key_sign_in() -> None:
    """The API-key field (development and scripts)."""
    if not OIDC:
        st.caption(t("staff_sign_in"))
    key = st.text_input(t("api_key"), type="password", key="key_input")
    if st.button(t("sign_in"), key="sign_in") and key:
        try:
            me = client(key).me()  # the bot says what the key may do
            ss.api_key, ss.role, ss.messages = key, me["role"], []
            ss.admin = bool(me["admin"])
            st.rerun()
        except BotRequestError:
            st.error(t("bad_key"))
        except BotUnavailableError:
            st.error(t("bot_down"))


def browser_timezone() -> object:
    try:
        return st.context.timezone
    except Exception:  # no browser session
        return None


with st.sidebar:
    st.selectbox(t("language"), language_codes(), format_func=native_name, key="lang_choice",
                 on_change=choose_language)
    page = page_choice()
    st.divider()
    if signed_in():
        name = (USER or {}).get("name") or ss.me.get("name") or ""
        who = t("role_" + ss.role) + (f" · {t('admin')}" if ss.admin else "")
        st.success(f"{t('signed_in_as')}: **{history.plain(str(name))}** ({who})")
        if st.button(t("sign_out"), key="sign_out"):
            sign_out()
    elif ss.api_key:
        who = t("role_" + ss.role) + (f" · {t('admin')}" if ss.admin else "")
        st.success(f"{t('signed_in_as')}: **{who}**")
        if st.button(t("sign_out"), key="sign_out"):
            ss.api_key, ss.role, ss.messages, ss.admin = None, "public", [], False
            st.rerun()
    else:
        if ss.expired:
            st.warning(t("session_expired"))
        if OIDC:
            st.caption(t("staff_sign_in_oidc"))
            if st.button(t("sign_in"), key="oidc_sign_in", type="primary"):
                st.login()
        if api_key_field():
            with st.expander(t("api_key")) if OIDC else st.container():
                key_sign_in()
    if st.button(t("new_conversation"), key="new_conversation"):
        ss.messages, ss.conversation_id, ss.not_kept = [], None, False
        st.rerun()
    if signed_in() and page == "chat":
        try:
            history.sidebar(client(), t, ss, browser_timezone())
        except BotRequestError as exc:
            if exc.status == 401:
                expire()
                st.rerun()
            st.caption(t("history_failed"))
        except BotUnavailableError:
            st.caption(t("history_failed"))


def render_sources(result: dict[str, Any], n: int) -> None:
    """The answer's sources as closed cards, each in the direction of its own text (a Swedish
    source reads left to right in an Arabic answer)."""
    for i, c in enumerate(result.get("citations") or []):
        title, snippet = no_images(str(c.get("title", ""))), no_images(str(c.get("snippet", "")))
        number = c.get("number", i + 1)
        with st.container(key=f"dir-{text_direction(title + snippet)}-src-{n}-{number}"), \
                st.expander(f"[{number}] {title}"):
            if c.get("section"):
                st.markdown(f"_{no_images(str(c['section']))}_")
            st.markdown(snippet)
            link = c.get("url") or c.get("source")
            with st.container(key=f"dir-{direction(ss.lang)}-ref-{n}-{number}"):
                st.markdown(f"{t('source')}: `{c.get('corpus')}` · {no_images(str(link))}")


def render_result(result: dict[str, Any], n: int) -> None:
    """Everything under an answer: its badge (in the UI's language), sources and feedback."""
    st.caption(badge_text(ss.lang, result))
    render_sources(result, n)
    rid = result.get("request_id")
    if rid and result.get("feedback_token"):  # a reopened answer can no longer be rated
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
    if rid:
        st.caption(f"{t('request_id')}: `{rid}`")


def show_examples() -> None:
    """Example questions as buttons; a click asks it on the next run."""
    st.write(t("examples"))
    cols = st.columns(2)
    for i, q in enumerate(examples(ss.role, ss.lang)):
        if cols[i % 2].button(q, key=f"ex_{i}"):
            ss.pending = q
            st.rerun()


def show_conversation() -> None:
    """Each question in the direction of its text, each answer (and the bot's notice) in the
    direction of the answer's language, whatever the UI's language."""
    for n, m in enumerate(ss.messages):
        result = m.get("result")
        lang = result.get("lang") if result else None
        way = direction(lang) if lang else text_direction(m["content"])
        with st.chat_message(m["role"]):
            with st.container(key=f"dir-{way}-msg-{n}"):
                if result and result.get("refused"):
                    st.warning(no_images(m["content"]))
                else:
                    st.markdown(no_images(m["content"]))
                if result and result.get("notice"):
                    st.info(no_images(str(result["notice"])))
            if result:
                render_result(result, n)


def stream_answer(history: list[dict[str, str]]) -> dict[str, Any] | None:
    """The answer streamed into an assistant message; its final event, or None after an error
    (which is shown)."""
    final: dict[str, Any] = {}

    def tokens() -> Iterator[str]:
        kept = ss.conversation_id if signed_in() else None
        for kind, data in client().chat_stream(history[-20:], kept):
            if kind == "token":
                yield data["text"]
            elif kind == "final":
                final.update(data)

    # While it is written its language is not known yet: each paragraph takes the direction of
    # its first letter (the finished answer is shown again in its language's direction).
    with st.chat_message("assistant"), st.container(key="dir-auto-msg-stream"):
        try:
            st.write_stream(no_images_stream(tokens()))
        except BotUnavailableError:
            st.error(t("bot_down"))
            return None
        except BotRequestError as exc:
            if exc.status == 401 and ss.token:  # the sign-in expired
                expire()
                st.rerun()
            st.error(f"{t('error')}: {exc.detail}")
            return None
    return final


def ask(question: str) -> None:
    ss.pending = None
    ss.messages.append({"role": "user", "content": question})
    with st.chat_message("user"), st.container(key=f"dir-{text_direction(question)}-msg-ask"):
        st.markdown(no_images(question))
    history = [{"role": m["role"], "content": m["content"]} for m in ss.messages]
    final = stream_answer(history)
    if final is None:
        return
    if final:
        ss.messages.append({"role": "assistant", "content": final["answer"], "result": final})
        if signed_in() and "conversation_id" in final:
            # None: the bot did not store it (e.g. sensitive, with no key to encrypt it).
            ss.conversation_id = final["conversation_id"]
            ss.not_kept = final["conversation_id"] is None
    st.rerun()


def chat_page() -> None:
    st.title(t("title"))
    st.info(t("ai_notice"), icon="🤖")
    if not client().healthy():
        st.error(t("bot_down"))
        return
    if not ss.messages:
        show_examples()
    show_conversation()
    if ss.not_kept and ss.messages:
        st.info(t("not_kept"), icon="🔒")
    question = st.chat_input(t("placeholder")) or ss.pending
    if question:
        ask(question)


def corpora_page() -> None:
    st.title(t("corpora"))
    try:
        rows = client().corpora()
    except (BotUnavailableError, BotRequestError):
        st.error(t("bot_down"))
        return
    # A corpus still being ingested is not answered from yet: its progress is shown.
    for r in rows:
        if r.get("state") == "ingesting":
            st.progress(_share(r.get("progress")), text=f"{r.get('title')}: {r.get('progress')}")
    st.dataframe(
        [{k: r.get(k) for k in ("name", "title", "state", "audience", "sensitivity",
                                "documents", "chunks", "last_ingest")} for r in rows],
        hide_index=True, width="stretch",
    )


def _share(progress: object) -> float:
    """"12/40" as 0.3 (0 when the total is not known yet)."""
    try:
        done, total = (int(x) for x in str(progress).split("/"))
    except ValueError:
        return 0.0
    return min(1.0, done / total) if total > 0 else 0.0


if page == "chat":
    chat_page()
elif page == "corpora":
    corpora_page()
elif page == "audit" and ss.admin:
    admin.audit_page(client(), t)
else:
    admin.evaluation_page(REPORTS, t)

"""Sign-in with OpenID Connect, against a real provider on loopback (``tests/oidc.py``): ID
tokens are fetched through the authorization-code flow and sent to the bot as bearer tokens;
the bot fetches the provider's discovery document and keys over HTTP."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bot.http.app import create_app
from bot.oidc import SubjectHasher
from gbg.settings import OIDCSettings, Settings
from ingest.embedders import Embedder
from tests.helpers import free_port, make_bot
from tests.oidc import CLIENT_ID, Provider, SigningIssuer, provider

GROUPS = {"gbg-care": "care", "gbg-staff": "staff"}
ANNA = "anna.andersson@stad.example"  # care
BO = "bo.berg@stad.example"  # staff
CIA = "cia@stad.example"  # no mapped group
ADA = "ada@stad.example"  # admin


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def oidc_settings(base: Settings, issuer: str, data_dir: Path, **kw: Any) -> Settings:
    s = base.model_copy(deep=True)
    s.data_dir = data_dir
    s.audit.url = f"sqlite:///{data_dir / 'audit.db'}"
    s.auth.keys_file = data_dir / "keys.json"
    s.bot.rate_per_key = s.bot.rate_per_address = None
    s.development = True
    s.auth.oidc = OIDCSettings(issuer=issuer, client_id=CLIENT_ID, group_roles=GROUPS,
                               admin_groups=["gbg-admins"], **kw)
    return s


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_users(p: Provider) -> None:
    p.user(ANNA, name="Anna Andersson", email=ANNA, groups=["gbg-care", "gbg-staff"])
    p.user(BO, name="Bo Berg", email=BO, groups=["gbg-staff"])
    p.user(CIA, name="Cia", email=CIA, groups=["other-group"])
    p.user(ADA, name="Ada", email=ADA, groups=["gbg-staff", "gbg-admins"])


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    with provider() as p:
        add_users(p)
        yield p


@dataclass
class Bot:
    client: TestClient
    settings: Settings


@pytest.fixture(scope="module")
def bot(idp: Provider, bundled_store: Settings, e5: Embedder,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    data = tmp_path_factory.mktemp("oidc")
    made = make_bot(bundled_store, data, e5=e5)
    s = oidc_settings(made.settings, idp.url, data)
    with TestClient(create_app(s, made.service)) as client:
        yield Bot(client, s)


def me(client: TestClient, token: str) -> Any:
    return client.get("/v1/me", headers=bearer(token))


# -- roles from groups -------------------------------------------------------------------------

def test_care_group_reads_brukare_staff_group_does_not(idp: Provider, bot: Bot) -> None:
    q = {"messages": [{"role": "user",
                       "content": "Vilken insulindos har Gunnel Andersson på kvällen?"}],
         "corpora": ["brukare"]}
    anna, bo = idp.id_token(ANNA), idp.id_token(BO)
    assert me(bot.client, anna).json() == {"role": "care", "admin": False, "signed_in": True,
                                           "name": "Anna Andersson"}
    r = bot.client.post("/v1/chat", json=q, headers=bearer(anna))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["sensitivity"] == "sensitive" and not d["refused"]
    assert d["citations"] and {c["corpus"] for c in d["citations"]} == {"brukare"}
    assert me(bot.client, bo).json()["role"] == "staff"
    r = bot.client.post("/v1/chat", json=q, headers=bearer(bo))
    assert r.status_code == 403 and "brukare" in r.json()["detail"]
    staff_q = {**q, "corpora": ["hemtjanst-rutiner"],
               "messages": [{"role": "user", "content": "Hur ska jag tvätta händerna?"}]}
    assert bot.client.post("/v1/chat", json=staff_q, headers=bearer(bo)).status_code == 200


def test_token_without_a_mapped_group_is_the_public_role(idp: Provider, bot: Bot) -> None:
    cia = idp.id_token(CIA)
    assert me(bot.client, cia).json() == {"role": "public", "admin": False, "signed_in": True,
                                          "name": "Cia"}
    r = bot.client.post("/v1/chat", headers=bearer(cia), json={
        "messages": [{"role": "user", "content": "Hur tvättar jag händerna?"}],
        "corpora": ["hemtjanst-rutiner"]})
    assert r.status_code == 403


def test_admin_group_reads_the_audit_log(idp: Provider, bot: Bot) -> None:
    assert bot.client.get("/v1/audit", headers=bearer(idp.id_token(ADA))).status_code == 200
    assert bot.client.get("/v1/audit", headers=bearer(idp.id_token(BO))).status_code == 403


def test_anonymous_and_api_keys_still_work(bot: Bot) -> None:
    assert bot.client.get("/v1/me").json() == {"role": "public", "admin": False,
                                               "signed_in": False, "name": None}
    from bot.auth import KeyStore
    from gbg.labels import Role
    key = KeyStore(bot.settings.keys_path).create(Role.staff, "script")
    assert bot.client.get("/v1/me", headers={"X-API-Key": key}).json()["role"] == "staff"
    assert bot.client.get("/v1/me", headers=bearer(key)).json()["role"] == "staff"


# -- tokens that are refused -------------------------------------------------------------------

def _refused(bot: Bot, token: str) -> str:
    r = me(bot.client, token)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    detail: str = r.json()["detail"]
    assert token not in detail
    return detail


def test_wrong_audience_is_refused(idp: Provider, bot: Bot) -> None:
    token = idp.id_token(ANNA, client_id="some-other-app")
    assert _claims(token)["aud"] == ["some-other-app"]
    assert "another application" in _refused(bot, token)


def test_wrong_issuer_is_refused_though_signed_with_the_right_key(idp: Provider, bot: Bot
                                                                  ) -> None:
    # The provider names itself after the host it is reached by: same key, other issuer.
    token = idp.id_token(ANNA, host="127.0.0.1")
    assert _claims(token)["iss"] != idp.url
    assert "another provider" in _refused(bot, token)


def test_unsigned_token_is_refused(idp: Provider, bot: Bot) -> None:
    _, payload, _ = idp.id_token(ANNA).split(".")
    for alg in ("none", "None", "NONE"):
        assert "algorithm" in _refused(bot, f"{_b64({'alg': alg, 'typ': 'JWT'})}.{payload}.")


def test_symmetric_algorithm_confusion_is_refused(idp: Provider, bot: Bot) -> None:
    """HS256 "signed" with the provider's public key as the secret (the classic confusion)."""
    import hashlib
    import hmac

    import httpx

    jwks = httpx.get(f"{idp.url}/jwks", timeout=5).text.encode()
    _, payload, _ = idp.id_token(BO).split(".")
    claims = {**_claims(idp.id_token(BO)), "groups": ["gbg-care"]}
    head = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64(claims)
    sig = base64.urlsafe_b64encode(hmac.new(jwks, f"{head}.{body}".encode(),
                                            hashlib.sha256).digest()).rstrip(b"=").decode()
    assert "algorithm" in _refused(bot, f"{head}.{body}.{sig}")


def test_tampered_token_is_refused(idp: Provider, bot: Bot) -> None:
    head, _, sig = idp.id_token(BO).split(".")
    raised = {**_claims(idp.id_token(BO)), "groups": ["gbg-care"]}
    assert "signature" in _refused(bot, f"{head}.{_b64(raised)}.{sig}")
    assert "malformed" in _refused(bot, "abc.def.ghi")


def test_expired_token_is_refused(bundled_store: Settings, tmp_path: Path) -> None:
    with provider(token_max_age=timedelta(minutes=-5)) as p:
        add_users(p)
        token = p.id_token(ANNA)
        s = oidc_settings(bundled_store, p.url, tmp_path)
        with TestClient(create_app(s)) as client:
            r = me(client, token)
            assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_rotated_signing_key_is_picked_up(bundled_store: Settings, tmp_path: Path) -> None:
    """The provider restarts with a new key on the same address: the bot fetches the keys again
    when a token names a key it does not hold; tokens signed with the retired key stop working."""
    port = free_port()
    s = oidc_settings(bundled_store, f"http://localhost:{port}", tmp_path, jwks_refresh_min_s=0)
    with TestClient(create_app(s)) as client:
        state = client.app.state.gbg  # type: ignore[attr-defined]
        with provider(port) as p:
            add_users(p)
            old = p.id_token(BO)
            assert me(client, old).json()["role"] == "staff"
        with provider(port) as p:
            add_users(p)
            new = p.id_token(BO)
            assert me(client, new).json()["role"] == "staff"
            assert state.verifier.jwks.fetches == 2
            assert "signature" in me(client, old).json()["detail"]


def test_provider_down_is_503_not_500(bundled_store: Settings, tmp_path: Path) -> None:
    with provider() as p:
        add_users(p)
        token = p.id_token(BO)
        url = p.url
    s = oidc_settings(bundled_store, url, tmp_path)
    with TestClient(create_app(s)) as client:
        r = me(client, token)
        assert r.status_code == 503 and "sign-in provider" in r.json()["detail"]


def test_bearer_token_without_a_configured_provider_is_401(idp: Provider, bundled_store: Settings,
                                                           tmp_path: Path) -> None:
    s = oidc_settings(bundled_store, idp.url, tmp_path)
    s.auth.oidc = None
    with TestClient(create_app(s)) as client:
        r = me(client, idp.id_token(BO))
        assert r.status_code == 401 and "no sign-in provider" in r.json()["detail"]


def test_issuer_without_https_is_refused_outside_development() -> None:
    oidc = {"issuer": "http://login.stad.example/realms/gbg", "client_id": "gbg-ui"}
    with pytest.raises(ValidationError, match="not HTTPS"):
        Settings(auth={"oidc": oidc})
    assert Settings(auth={"oidc": oidc}, development=True)
    https = {**oidc, "issuer": "https://login.stad.example/realms/gbg"}
    assert Settings(auth={"oidc": https}).auth.oidc


def test_keycloak_style_nested_role_claim(idp: Provider, bundled_store: Settings,
                                          tmp_path: Path) -> None:
    idp.user("kc@stad.example", realm_access={"roles": ["offline_access", "gbg-care"]})
    s = oidc_settings(bundled_store, idp.url, tmp_path, role_claim="realm_access.roles")
    with TestClient(create_app(s)) as client:
        assert me(client, idp.id_token("kc@stad.example")).json()["role"] == "care"


# -- per person: limits, audit, logs -----------------------------------------------------------

def test_rate_limit_counts_the_person_not_the_token(idp: Provider, bundled_store: Settings,
                                                    tmp_path: Path) -> None:
    s = oidc_settings(bundled_store, idp.url, tmp_path)
    s.bot.rate_per_key = "4/minute"
    with TestClient(create_app(s)) as client:
        tokens = [idp.id_token(BO) for _ in range(3)]  # three sign-ins, three tokens
        codes = [me(client, tokens[i % 3]).status_code for i in range(6)]
        assert codes[:4] == [200] * 4 and codes[4:] == [429, 429]
        assert me(client, idp.id_token(CIA)).status_code == 200  # someone else is not limited


def test_no_name_email_or_sub_in_audit_or_logs(idp: Provider, bot: Bot,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = idp.id_token(ANNA)
    ids = []
    for q in ("Hur ska jag tvätta händerna?", "Vad gör jag om brukaren har fallit?"):
        r = bot.client.post("/v1/chat", headers=bearer(token),
                            json={"messages": [{"role": "user", "content": q}]})
        assert r.status_code == 200
        ids.append(r.headers["X-Request-ID"])
    me(bot.client, token[:-4] + "AAAA")  # a refused one is audited too
    db = bot.settings.audit_url.split("///", 1)[1]
    with sqlite3.connect(db) as conn:
        tables = [t for (t,) in conn.execute("select name from sqlite_master where type='table'")]
        dump = "\n".join(repr(row) for t in tables for row in conn.execute(f"select * from {t}"))
        subjects = {s for (s,) in conn.execute(
            "select subject from audit where request_id in (?, ?)", ids)}
    assert len(subjects) == 1  # the same person, under one pseudonym
    (subject,) = subjects
    assert len(subject) == 32 and ANNA not in subject
    ours = "\n".join(r.getMessage() for r in caplog.records
                     if r.name.split(".")[0] in {"bot", "gbg", "ingest", "uvicorn", "httpx"})
    for secret in ("Anna", "Andersson", ANNA, "anna.andersson", token):
        assert secret not in dump, secret
        assert secret not in ours, secret


# -- token shapes real providers send (an issuer on loopback that signs what the test shapes) ---

@pytest.fixture
def shaped(bundled_store: Settings, tmp_path: Path) -> Iterator[tuple[SigningIssuer, TestClient]]:
    issuer = SigningIssuer()
    s = oidc_settings(bundled_store, issuer.url, tmp_path, jwks_refresh_min_s=1.0)
    try:
        with TestClient(create_app(s)) as client:
            yield issuer, client
    finally:
        issuer.close()


def test_only_id_tokens_issued_to_this_application(
        shaped: tuple[SigningIssuer, TestClient]) -> None:
    issuer, client = shaped
    care: dict[str, Any] = {"groups": ["gbg-care"]}
    assert me(client, issuer.token(**care)).json()["role"] == "care"
    ok = issuer.token(aud=[CLIENT_ID, "other"], azp=CLIENT_ID, typ="ID", **care)
    assert me(client, ok).json()["role"] == "care"
    refused = {
        # an ID token of another client that lists this one among its audiences
        "another client's": issuer.token(aud=[CLIENT_ID, "other"], azp="other", **care),
        "several audiences, no azp": issuer.token(aud=[CLIENT_ID, "other"], **care),
        # Keycloak: an access token for a single-page app with this client in its audience
        "keycloak access": issuer.token(aud=[CLIENT_ID, "account"], azp="some-spa",
                                        typ="Bearer", scope="openid profile", **care),
        # Entra ID: an access token for this application's API
        "entra access": issuer.token(scp="access_as_user", **care),
        # RFC 9068 access tokens
        "at+jwt": issuer.token(header={"typ": "at+jwt"}, **care),
    }
    for what, token in refused.items():
        r = me(client, token)
        assert r.status_code == 401, what
        assert "application" in r.json()["detail"] or "access token" in r.json()["detail"] \
            or "ID tokens" in r.json()["detail"], what


def test_a_group_name_is_not_split(shaped: tuple[SigningIssuer, TestClient]) -> None:
    issuer, client = shaped
    assert me(client, issuer.token(groups="x gbg-care")).json()["role"] == "public"
    assert me(client, issuer.token(groups="gbg-care")).json()["role"] == "care"


def test_keys_are_fetched_again_only_for_a_new_key_and_not_too_often(
        shaped: tuple[SigningIssuer, TestClient]) -> None:
    issuer, client = shaped
    jwks = lambda: issuer.requests.count("/jwks")  # noqa: E731
    assert me(client, issuer.token(groups=["gbg-staff"])).status_code == 200
    assert jwks() == 1
    for bad in ("abc.def.ghi", issuer.token(groups=["gbg-staff"])[:-6] + "AAAAAA"):
        assert me(client, bad).status_code == 401
    assert jwks() == 1  # garbage and bad signatures under a known key id fetch nothing
    time.sleep(1.1)
    issuer.rotate()
    new = issuer.token(groups=["gbg-staff"])
    assert me(client, new).status_code == 200 and jwks() == 2  # a new key id: fetched
    for i in range(5):  # unknown key ids: at most one fetch per jwks_refresh_min_s
        me(client, issuer.token(header={"kid": f"forged-{i}"}, groups=["gbg-staff"]))
    assert jwks() == 2
    time.sleep(1.1)
    me(client, issuer.token(header={"kid": "forged-late"}, groups=["gbg-staff"]))
    assert jwks() == 3


def test_held_keys_serve_while_the_provider_is_down(
        shaped: tuple[SigningIssuer, TestClient]) -> None:
    issuer, client = shaped
    token = issuer.token(groups=["gbg-staff"])
    assert me(client, token).status_code == 200
    issuer.close()
    state = client.app.state.gbg  # type: ignore[attr-defined]
    state.verifier.jwks.s = state.verifier.jwks.s.model_copy(update={"jwks_cache_s": 0})
    for _ in range(3):  # stale keys, the provider unreachable: still verified, one attempt
        assert me(client, token).json()["role"] == "staff"


def test_symmetric_or_no_algorithms_cannot_be_configured() -> None:
    for algs in (["RS256", "none"], ["HS256"], []):
        with pytest.raises(ValidationError, match="not accepted"):
            OIDCSettings(issuer="https://idp.example", client_id="x", algorithms=algs)


def test_the_subject_key_is_required_outside_development(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GBG_SUBJECT_KEY", raising=False)
    with pytest.raises(ValueError, match="GBG_SUBJECT_KEY"):
        SubjectHasher.from_settings("GBG_SUBJECT_KEY", tmp_path)
    monkeypatch.setenv("GBG_SUBJECT_KEY", "short")
    with pytest.raises(ValueError, match="too short"):
        SubjectHasher.from_settings("GBG_SUBJECT_KEY", tmp_path)
    monkeypatch.setenv("GBG_SUBJECT_KEY", "k" * 40)
    a = SubjectHasher.from_settings("GBG_SUBJECT_KEY", tmp_path)
    assert a("iss", "anna") == SubjectHasher.from_settings("GBG_SUBJECT_KEY", tmp_path)(
        "iss", "anna") != a("iss", "bo")
    monkeypatch.delenv("GBG_SUBJECT_KEY")
    dev = SubjectHasher.from_settings("GBG_SUBJECT_KEY", tmp_path, development=True)
    key = tmp_path / "subject.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    again = SubjectHasher.from_settings("GBG_SUBJECT_KEY", tmp_path, development=True)
    assert dev("iss", "anna") == again("iss", "anna")

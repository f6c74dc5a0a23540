"""UI texts, Swedish first and English always."""

from __future__ import annotations

from typing import Any

T: dict[str, dict[str, str]] = {
    "sv": {
        "title": "Fråga Göteborgs Stad",
        "ai_notice": "Du chattar med en AI-assistent, inte med en människa. Svaren skapas "
        "automatiskt utifrån stadens egna texter och visar vilka källor de bygger på. "
        "Assistenten kan ha fel och kan inte fatta beslut i ditt ärende. Skriv inte "
        "personnummer eller andra personuppgifter. Vid akut fara: ring 112.",
        "placeholder": "Skriv din fråga …",
        "examples": "Exempel på frågor:",
        "page": "Sida",
        "chat": "Chatt",
        "corpora": "Källsamlingar",
        "evaluation": "Utvärdering",
        "signed_in_as": "Inloggad som",
        "role_public": "besökare",
        "role_staff": "personal i hemtjänsten",
        "role_care": "vårdpersonal med brukaransvar",
        "sign_out": "Logga ut",
        "sign_in": "Logga in",
        "staff_sign_in": "Personal: logga in med din nyckel för att nå rutiner och "
        "genomförandeplaner.",
        "api_key": "Nyckel",
        "bad_key": "Nyckeln godtogs inte.",
        "bot_down": "Assistenten går inte att nå just nu. Försök igen om en stund "
        "eller ring kontaktcenter 031-365 00 00.",
        "new_conversation": "Ny konversation",
        "source": "Källa",
        "comment": "Kommentar (valfri)",
        "thanks": "Tack för din återkoppling!",
        "feedback_failed": "Återkopplingen kunde inte sparas.",
        "error": "Något gick fel",
        "no_reports": "Inga utvärderingsrapporter ännu. "
                      "Kör `gbg eval run` eller `gbg eval retrieval`.",
        "queries": "frågor",
        "request_id": "Ärende-id",
        "audit": "Granskningslogg",
        "audit_needs_admin": "Granskningsloggen kräver en administratörsnyckel.",
        "audit_intro": "Varje förfrågan, maskerad: frågor med personuppgifter sparas inte.",
        "filter_level": "Känslighetsnivå",
        "filter_provider": "Modell (leverantör)",
        "filter_refused": "Nekade",
        "all": "alla",
        "yes": "ja",
        "no": "nej",
        "rows": "Antal rader",
        "requests": "Förfrågningar",
        "refused_share": "Andel nekade",
        "sensitive_share": "Andel känsliga",
        "feedback": "Återkoppling 👍/👎",
        "latest_run": "Senaste körningen",
        "runs_over_time": "Körningar över tid",
        "metric": "Mått",
        "admin": "administratör",
    },
    "en": {
        "title": "Ask the City of Gothenburg",
        "ai_notice": "You are chatting with an AI assistant, not a person. Answers are "
        "generated automatically from the city's own texts and show the sources they rely on. "
        "The assistant can be wrong and cannot make decisions in your case. Do not enter "
        "personal identity numbers or other personal data. In an emergency: call 112.",
        "placeholder": "Type your question …",
        "examples": "Example questions:",
        "page": "Page",
        "chat": "Chat",
        "corpora": "Collections",
        "evaluation": "Evaluation",
        "signed_in_as": "Signed in as",
        "role_public": "visitor",
        "role_staff": "home-care staff",
        "role_care": "care staff with client responsibility",
        "sign_out": "Sign out",
        "sign_in": "Sign in",
        "staff_sign_in": "Staff: sign in with your key to reach routines and care plans.",
        "api_key": "Key",
        "bad_key": "The key was not accepted.",
        "bot_down": "The assistant cannot be reached right now. Please try again later "
        "or call the contact centre on +46 31-365 00 00.",
        "new_conversation": "New conversation",
        "source": "Source",
        "comment": "Comment (optional)",
        "thanks": "Thank you for your feedback!",
        "feedback_failed": "The feedback could not be saved.",
        "error": "Something went wrong",
        "no_reports": "No evaluation reports yet. Run `gbg eval run` or `gbg eval retrieval`.",
        "queries": "questions",
        "request_id": "Request id",
        "audit": "Audit log",
        "audit_needs_admin": "The audit log needs an admin key.",
        "audit_intro": "Every request, redacted: questions with personal data are not stored.",
        "filter_level": "Sensitivity level",
        "filter_provider": "Model (provider)",
        "filter_refused": "Refused",
        "all": "all",
        "yes": "yes",
        "no": "no",
        "rows": "Rows",
        "requests": "Requests",
        "refused_share": "Refused",
        "sensitive_share": "Sensitive",
        "feedback": "Feedback 👍/👎",
        "latest_run": "Latest run",
        "runs_over_time": "Runs over time",
        "metric": "Metric",
        "admin": "administrator",
    },
}

EXAMPLES: dict[str, dict[str, list[str]]] = {
    "public": {
        "sv": ["Hur tar jag mig från Landvetter till centrum?",
               "Hur ansöker jag om parkeringstillstånd för rörelsehindrade?",
               "Var kan jag lämna grovsopor?", "Hur tar jag mig till skärgården?"],
        "en": ["How do I get from the airport to the city centre?", "What is Liseberg?",
               "How do I get to the southern archipelago?", "Is tap water safe to drink?"],
    },
    "staff": {
        "sv": ["Vad gäller för basala hygienrutiner?", "Vad gör jag om brukaren inte öppnar?",
               "Hur rapporterar jag en avvikelse?", "Hur förebygger vi fall i hemmet?"],
        "en": ["What are the basic hygiene routines?", "What do I do if a client does not open?",
               "How do I report a deviation?", "How do we prevent falls at home?"],
    },
}
EXAMPLES["care"] = EXAMPLES["staff"]

_WHERE = {
    "sv": {"local": "stadens egen AI-modell", "cloud": "en AI-tjänst i molnet",
           "extractive": "utdrag ur källorna (ingen språkmodell)"},
    "en": {"local": "the city's own AI model", "cloud": "a cloud AI service",
           "extractive": "passages from the sources (no language model)"},
}
_LEVEL = {
    "sv": {"public": "öppen information", "internal": "intern information",
           "sensitive": "känsliga uppgifter – stannar på stadens datorer"},
    "en": {"public": "public information", "internal": "internal information",
           "sensitive": "sensitive data – stays on the city's computers"},
}


def badge_text(lang: str, result: dict[str, Any]) -> str:
    if result.get("refused"):
        where = "–"
    elif result.get("provider") == "extractive":
        where = _WHERE[lang]["extractive"]
    else:
        where = _WHERE[lang].get(str(result.get("location")), "?")
    made = "Svar från" if lang == "sv" else "Answer from"
    model = f" ({result['model']})" if result.get("model") else ""
    level = _LEVEL[lang].get(str(result.get("sensitivity")), "")
    return f"🤖 {made}: {where}{model} · {level}"

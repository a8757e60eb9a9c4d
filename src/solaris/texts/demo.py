"""What `solaris demo` tells the operator, in pt-BR and English: that it is starting, the guide
it prints once everything answers (the calls to paste, the pages and their sign-in, the
`librechat.yaml` snippet) and where the data stays when it stops; and the line the demo's
purchase page shows a user who ran out of tokens.

The commands and the snippet are made by the demo itself and are the same in both languages, so
that the README's quick start can show them as they are printed.
"""

from __future__ import annotations

from solaris.texts import Language

__all__ = ["GUIDE", "PURCHASE_CONTACT", "STARTING", "STOPPED"]

STARTING: dict[Language, str] = {
    "pt-BR": "Iniciando a demonstração do SOLARIS Gateway (dados em {data_dir})…",
    "en": "Starting the SOLARIS Gateway demo (data in {data_dir})…",
}

GUIDE: dict[Language, str] = {
    "pt-BR": """\
A demonstração do SOLARIS Gateway está rodando em {base_url} (SQLite em {data_dir}).
O upstream é o provedor de desenvolvimento ({provider_url}): respostas determinísticas, sem \
conta em nenhum provedor.

1. Um chat em streaming, como o LibreChat o envia para o usuário {user}, cuja franquia \
({allowance} tokens) cobre uma resposta:

{chat}

2. Rode o mesmo comando de novo: a franquia acabou, e a resposta é a mensagem de bloqueio com o \
link para comprar créditos ({base_url}/portal/buy?t=…). Para dar mais tokens ao usuário, como \
um operador faria (depois o mesmo chat é atendido de novo):

{grant}

3. O painel: {base_url}/admin, entre como {admin_email} com a senha {password}
   O portal do usuário {user}, já com sessão (o link vale uma vez, por {link_hours} horas):
   {portal_link}

4. LibreChat: este endpoint no librechat.yaml o aponta para a demonstração:

{librechat_yaml}
Logs: {gateway_log} e {provider_log}. Ctrl-C encerra a demonstração.""",
    "en": """\
The SOLARIS Gateway demo is running on {base_url} (SQLite in {data_dir}).
Its upstream is the development provider ({provider_url}): deterministic replies, no provider \
account needed.

1. A streamed chat, as LibreChat sends it for the user {user}, whose allowance \
({allowance} tokens) covers one reply:

{chat}

2. Run the same command again: the allowance is spent, and the reply is the block message with \
its link to buy credits ({base_url}/portal/buy?t=…). To give the user more tokens, as an \
operator would (then the same chat is served again):

{grant}

3. The dashboard: {base_url}/admin, sign in as {admin_email} with the password {password}
   The portal of {user}, signed in (the link works once, within {link_hours} hours):
   {portal_link}

4. LibreChat: this endpoint in librechat.yaml points it at the demo:

{librechat_yaml}
Logs: {gateway_log} and {provider_log}. Ctrl-C stops the demo.""",
}

STOPPED: dict[Language, str] = {
    "pt-BR": (
        "Demonstração encerrada. Os dados ficam em {data_dir} (o banco SQLite {database} e os "
        "logs); veja-os com `SOLARIS_DATABASE_URL={database_url} {solaris} users list` e apague a "
        "pasta quando terminar."
    ),
    "en": (
        "Demo stopped. Its data stays in {data_dir} (the SQLite database {database} and the "
        "logs); look at it with `SOLARIS_DATABASE_URL={database_url} {solaris} users list`, and "
        "delete the directory when you are done."
    ),
}

PURCHASE_CONTACT: dict[Language, str] = {
    "pt-BR": (
        "Isto é uma demonstração: o operador adiciona créditos com "
        "solaris credits grant {user} {tokens}."
    ),
    "en": "This is a demo: the operator adds credits with solaris credits grant {user} {tokens}.",
}

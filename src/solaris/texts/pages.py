"""Every word the web pages say, in pt-BR and English (how numbers and dates read: `formats`).

One catalog: a key maps to its (pt-BR, English) pair, so a text missing in one language cannot
slip in (the tuple has two slots). A page asks `t("key", name=value)`; an unknown key raises, so a
typo fails the page tests instead of showing the key. The language comes from the `solaris_lang`
cookie (the switcher on every page sets it), else the browser's Accept-Language, else
`SOLARIS_LANGUAGE`.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from solaris.texts import LANGUAGES, Language
from solaris.texts.order_admin import ORDER_ADMIN_MESSAGES
from solaris.texts.purchase import PURCHASE_MESSAGES

__all__ = [
    "LANGUAGES",
    "LANG_COOKIE",
    "MESSAGES",
    "Language",
    "Translator",
    "choose_language",
    "translator",
]

LANG_COOKIE = "solaris_lang"
Translator = Callable[..., str]

MESSAGES: dict[str, tuple[str, str]] = {
    **PURCHASE_MESSAGES,
    **ORDER_ADMIN_MESSAGES,
    # Chrome shared by every page.
    "lang.switch": ("English", "Português"),
    "lang.switch_title": ("Switch to English", "Mudar para português"),
    "area.admin": ("Painel", "Dashboard"),
    "area.portal": ("Minha conta", "My account"),
    "action.logout": ("Sair", "Sign out"),
    "footer": ("SOLARIS Gateway · medição de tokens", "SOLARIS Gateway · token metering"),
    "nav.overview": ("Visão geral", "Overview"),
    "nav.users": ("Usuários", "Users"),
    "nav.plans": ("Planos", "Plans"),
    "nav.alerts": ("Alertas", "Alerts"),
    "nav.audit": ("Auditoria", "Audit log"),
    "nav.api": ("API", "API"),
    "nav.home": ("Início", "Home"),
    "nav.statement": ("Extrato", "Statement"),
    "nav.buy": ("Comprar créditos", "Buy credits"),
    "nav.orders": ("Pedidos", "Orders"),
    "nav.limit": ("Limites", "Limits"),
    # The limits page (portal).
    "limit.title": ("Meus limites", "My limits"),
    "limit.lead": (
        "Quanto você pode usar, além do saldo: os limites do seu plano e o seu.",
        "How much you may use besides your balance: your plan's limits, and your own.",
    ),
    "limit.in_force": ("Limites em vigor", "Limits in force"),
    "limit.which": ("Limite", "Limit"),
    "limit.used": ("Usado", "Used"),
    "limit.limit": ("Máximo", "Maximum"),
    "limit.state": ("Situação", "State"),
    "limit.kind.day": ("Por dia (plano)", "Per day (plan)"),
    "limit.kind.week": ("Por semana (plano)", "Per week (plan)"),
    "limit.kind.hours": ("A cada {hours} h (plano)", "Every {hours} h (plan)"),
    "limit.kind.model": ("{pattern} por período (plano)", "{pattern} per period (plan)"),
    "limit.kind.own_day": ("Por dia (seu)", "Per day (yours)"),
    "limit.kind.own_month": ("Por mês (seu)", "Per month (yours)"),
    "limit.full": ("Atingido: reabre {when}", "Reached: reopens {when}"),
    "limit.renews": ("Recomeça {when}", "Starts afresh {when}"),
    "limit.rolling": ("Janela móvel de {hours} h", "Rolling {hours} h window"),
    "limit.none": (
        "Seu plano não tem limites além do saldo.",
        "Your plan has no limits besides the balance.",
    ),
    "limit.own": ("Meu limite", "My own limit"),
    "limit.own_hint": (
        "Defina um teto menor para o seu próprio uso; você pode aumentá-lo ou removê-lo quando "
        "quiser. Ele vale em poucos segundos.",
        "Set a lower ceiling for your own use; you can raise or remove it whenever you like. "
        "It applies within seconds.",
    ),
    "limit.tokens": ("Tokens", "Tokens"),
    "limit.per": ("por", "per"),
    "limit.per_day": ("dia", "day"),
    "limit.per_month": ("mês", "month"),
    "limit.save": ("Salvar", "Save"),
    "limit.remove": ("Remover meu limite", "Remove my limit"),
    "limit.saved": ("Limite salvo.", "Limit saved."),
    "limit.invalid": (
        "Informe um número inteiro de tokens, por dia ou por mês.",
        "Give a whole number of tokens, per day or per month.",
    ),
    "error.forbidden": ("Acesso negado", "Access denied"),
    "error.csrf": (
        "O formulário expirou ou não veio desta página. Volte, recarregue e tente de novo.",
        "The form expired or did not come from this page. Go back, reload and try again.",
    ),
    "error.not_found": ("Página não encontrada", "Page not found"),
    "error.refused": ("Não foi possível", "That did not work"),
    "error.too_many": ("Muitas tentativas", "Too many attempts"),
    "error.unavailable": ("Serviço indisponível", "Service unavailable"),
    "error.unavailable_text": (
        "O banco de dados está fora do ar neste momento. Tente de novo em instantes.",
        "The database is unreachable right now. Please try again in a moment.",
    ),
    "error.not_found_text": ("Não há nada neste endereço.", "There is nothing at this address."),
    "error.back": ("Voltar ao início", "Back to the start"),
    "empty": ("Nada por aqui ainda.", "Nothing here yet."),
    "pager.previous": ("Anterior", "Previous"),
    "pager.next": ("Próxima", "Next"),
    "tokens": ("tokens", "tokens"),
    # Admin sign-in.
    "login.title": ("Entrar no painel", "Sign in to the dashboard"),
    "login.subtitle": ("Acesso de administradores", "For administrators"),
    "login.email": ("E-mail", "E-mail"),
    "login.password": ("Senha", "Password"),
    "login.submit": ("Entrar", "Sign in"),
    "login.failed": ("E-mail ou senha incorretos.", "Wrong e-mail or password."),
    "login.too_many": (
        "Muitas tentativas. Tente de novo em {seconds} s.",
        "Too many attempts. Try again in {seconds} s.",
    ),
    "login.too_many_minutes": (
        "Muitas tentativas. Tente de novo em {minutes} min.",
        "Too many attempts. Try again in {minutes} min.",
    ),
    "notice.failed_sign_ins": (
        "Tentativas de entrar na sua conta que falharam desde a sua entrada anterior: {count}; "
        "a última em {when}, de {address}.",
        "Failed sign-in attempts on your account since your previous sign-in: {count}; "
        "the latest on {when}, from {address}.",
    ),
    "notice.see_audit": ("Ver a auditoria", "See the audit log"),
    # Admin overview.
    "overview.title": ("Visão geral", "Overview"),
    "overview.tokens_today": ("Tokens hoje", "Tokens today"),
    "overview.tokens_period": ("Tokens neste mês", "Tokens this month"),
    "overview.active_users": ("Usuários ativos hoje", "Active users today"),
    "overview.users_total": (
        "{total} no total · {blocked} bloqueados",
        "{total} in all · {blocked} blocked",
    ),
    "overview.blocked": ("Bloqueadas por saldo", "Blocked for balance"),
    "overview.limited": ("{count} acima do limite de ritmo", "{count} over rate limits"),
    "overview.error_rate": ("Taxa de erro", "Error rate"),
    "overview.since": ("neste processo, desde {when}", "this process, since {when}"),
    "overview.latency": ("Latência p95 hoje", "Latency p95 today"),
    "overview.requests": ("{count} requisições", "{count} requests"),
    "overview.chart_days": ("Tokens por dia (30 dias)", "Tokens per day (30 days)"),
    "overview.top_users": ("Quem mais usou neste mês", "Top users this month"),
    "overview.top_models": ("Modelos mais usados neste mês", "Top models this month"),
    # Users.
    "users.title": ("Usuários", "Users"),
    "users.search": ("Buscar por id ou e-mail", "Search by id or e-mail"),
    "users.search_button": ("Buscar", "Search"),
    "col.user": ("Usuário", "User"),
    "col.email": ("E-mail", "E-mail"),
    "col.plan": ("Plano", "Plan"),
    "col.balance": ("Saldo", "Balance"),
    "col.status": ("Situação", "Status"),
    "col.created": ("Desde", "Since"),
    "col.model": ("Modelo", "Model"),
    "col.requests": ("Requisições", "Requests"),
    "col.tokens": ("Tokens", "Tokens"),
    "col.date": ("Data", "Date"),
    "col.kind": ("Tipo", "Kind"),
    "col.prompt": ("Entrada", "Input"),
    "col.completion": ("Saída", "Output"),
    "col.amount": ("Valor", "Amount"),
    "col.note": ("Observação", "Note"),
    "status.active": ("Ativo", "Active"),
    "status.blocked": ("Bloqueado", "Blocked"),
    # One user.
    "user.available": ("Disponível", "Available"),
    "user.held": ("Reservado agora", "Held now"),
    "user.used_period": ("Usado no período", "Used this period"),
    "user.period_ends": ("Período termina", "Period ends"),
    "user.chart_days": ("Uso por dia (30 dias)", "Usage per day (30 days)"),
    "user.chart_hours": ("Uso por hora (últimas 24 h)", "Usage per hour (last 24 h)"),
    "user.statement": ("Extrato do período", "This period's statement"),
    "user.grant": ("Conceder créditos", "Grant credits"),
    "user.deduct": ("Corrigir (debitar)", "Correct (deduct)"),
    "user.tokens": ("Tokens", "Tokens"),
    "user.note": ("Motivo", "Reason"),
    "user.expires_days": ("Validade (dias)", "Expires in (days)"),
    "user.optional": ("opcional", "optional"),
    "user.grant_button": ("Conceder", "Grant"),
    "user.deduct_button": ("Debitar", "Deduct"),
    "user.plan": ("Mudar de plano", "Change plan"),
    "user.plan_button": ("Mudar", "Change"),
    "user.plan_hint": (
        "A franquia do novo plano substitui a atual na hora.",
        "The new plan's allowance replaces the current one at once.",
    ),
    "user.block": ("Bloquear", "Block"),
    "user.block_reason": ("Motivo do bloqueio", "Reason for blocking"),
    "user.unblock": ("Desbloquear", "Unblock"),
    "user.blocked_since": ("Bloqueado desde {when}: {reason}", "Blocked since {when}: {reason}"),
    "user.access": ("Acesso", "Access"),
    "user.rotate": ("Gerar nova chave de API", "Issue a new API key"),
    "user.rotate_hint": (
        "As chaves atuais deste usuário deixam de funcionar.",
        "This user's current keys stop working.",
    ),
    "user.new_key": (
        "Nova chave — copie agora, ela não será mostrada de novo:",
        "New key — copy it now, it will not be shown again:",
    ),
    "done.grant": ("Créditos concedidos.", "Credits granted."),
    "done.deduct": ("Correção registrada.", "Correction recorded."),
    "done.plan": ("Plano alterado.", "Plan changed."),
    "done.block": ("Usuário bloqueado.", "User blocked."),
    "done.unblock": ("Usuário desbloqueado.", "User unblocked."),
    "form.invalid": ("Confira os campos: {problem}", "Check the fields: {problem}"),
    # Plans, alerts, audit.
    "plans.title": ("Planos", "Plans"),
    "plans.allowance": ("Franquia", "Allowance"),
    "plans.period": ("Período", "Period"),
    "plans.limits": ("Limites", "Limits"),
    "plans.models": ("Modelos", "Models"),
    "plans.default": ("padrão", "default"),
    "plans.rollover": ("acumula", "rolls over"),
    "period.monthly": ("mensal", "monthly"),
    "period.weekly": ("semanal", "weekly"),
    "period.daily": ("diário", "daily"),
    "alerts.title": ("Alertas", "Alerts"),
    "alerts.kind": ("Alerta", "Alert"),
    "alerts.channel": ("Canal", "Channel"),
    "alerts.recipient": ("Destinatário", "Recipient"),
    "alerts.state": ("Entrega", "Delivery"),
    "alerts.attempts": ("Tentativas", "Attempts"),
    "audit.title": ("Auditoria", "Audit log"),
    "audit.actor": ("Quem", "Who"),
    "audit.action": ("Ação", "Action"),
    "audit.target": ("Alvo", "Target"),
    "audit.before": ("Antes", "Before"),
    "audit.after": ("Depois", "After"),
    # Entry kinds of a statement.
    "kind.allowance": ("Franquia", "Allowance"),
    "kind.grant": ("Crédito", "Credit"),
    "kind.refusal": ("Recusada", "Refused"),
    "kind.purchase": ("Compra", "Purchase"),
    "kind.usage": ("Uso", "Usage"),
    "kind.refund": ("Estorno", "Refund"),
    "kind.adjustment": ("Ajuste", "Adjustment"),
    "kind.expiry": ("Expiração", "Expiry"),
    # A balance below zero, everywhere it is shown.
    "owed.text": ("Você deve {tokens} tokens.", "You owe {tokens} tokens."),
    "owed.why": (
        "A próxima compra ou crédito paga esse valor primeiro; o restante fica para você usar.",
        "Your next purchase or credit pays this first; the rest is yours to use.",
    ),
    "owed.buy": ("Comprar créditos", "Buy credits"),
    "owed.admin": ("Deve {tokens} tokens", "Owes {tokens} tokens"),
    "owed.admin_hint": (
        "O próximo crédito ou compra cobre esse valor primeiro.",
        "The next credit or purchase covers it first.",
    ),
    "owed.badge": ("deve", "owes"),
    # Portal home.
    "home.title": ("Seu consumo", "Your usage"),
    "home.balance": ("Saldo disponível", "Available balance"),
    "home.allowance": ("Franquia do plano {plan}", "Allowance of plan {plan}"),
    "home.per_period": ("por período {period}", "per {period} period"),
    "home.used": ("Usado neste período", "Used this period"),
    "home.used_share": (
        "{percent}% do que você tinha neste período",
        "{percent}% of what you had this period",
    ),
    "home.renews": ("Renova em", "Renews on"),
    "home.chart_days": ("Uso por dia neste período", "Usage per day this period"),
    "home.chart_models": ("Uso por modelo neste período", "Usage per model this period"),
    "home.no_usage": ("Nenhum uso neste período.", "No usage this period."),
    "home.buy": ("Comprar créditos", "Buy credits"),
    "home.statement": ("Ver extrato", "See statement"),
    # Statement.
    "statement.title": ("Extrato", "Statement"),
    "statement.period": ("Período", "Period"),
    "statement.current": ("Período atual", "Current period"),
    "statement.show": ("Mostrar", "Show"),
    "statement.opening": ("Saldo inicial", "Opening balance"),
    "statement.closing": ("Saldo final", "Closing balance"),
    "statement.csv": ("Baixar CSV", "Download CSV"),
    "statement.truncated": (
        "O período tem mais lançamentos do que cabem aqui; baixe o CSV por mês.",
        "The period has more entries than fit here; download the CSV by month.",
    ),
    "statement.estimated": ("estimado", "estimated"),
    "statement.expires": ("válido até {when}", "valid until {when}"),
    "statement.filename": ("extrato", "statement"),
    # Portal sign-in.
    "plogin.title": ("Acesse sua conta", "Sign in to your account"),
    "plogin.lead": (
        "Informe o e-mail da sua conta de chat e enviaremos um link de acesso.",
        "Enter your chat account's e-mail and we will send you a sign-in link.",
    ),
    "plogin.email": ("Seu e-mail", "Your e-mail"),
    "plogin.submit": ("Enviar link", "Send link"),
    "plogin.sent": (
        "Se o endereço estiver cadastrado, um link de acesso está a caminho. "
        "Confira sua caixa de entrada.",
        "If the address is known, a sign-in link is on its way. Check your inbox.",
    ),
    "plogin.unavailable": (
        "O envio de links por e-mail não está configurado. Use o link da mensagem do chat.",
        "Sign-in links by e-mail are not set up. Use the link in the chat message.",
    ),
    "plogin.invalid_email": ("Informe um e-mail válido.", "Enter a valid e-mail."),
    "link.title": ("Este link não vale mais", "This link no longer works"),
    "link.text": (
        "Links de acesso valem por pouco tempo e uma só vez.",
        "Sign-in links work for a short time and only once.",
    ),
    "link.ask": ("Peça um novo abaixo.", "Ask for a new one below."),
    # The sign-in e-mail.
    "mail.subject": ("Seu link de acesso ao SOLARIS", "Your SOLARIS sign-in link"),
    "mail.body": (
        "Use o link abaixo para ver seu saldo e extrato. Ele vale por {minutes} minutos "
        "e uma só vez.",
        "Use the link below to see your balance and statement. It works for {minutes} "
        "minutes, once.",
    ),
    "mail.ignore": (
        "Se não foi você que pediu, ignore esta mensagem.",
        "If you did not ask for it, ignore this message.",
    ),
    "mail.button": ("Acessar minha conta", "Open my account"),
}


def translator(language: Language) -> Translator:
    index = LANGUAGES.index(language)

    def t(key: str, /, **values: object) -> str:
        text = MESSAGES[key][index]
        return text.format(**values) if values else text

    return t


def _known(value: str | None) -> Language | None:
    lowered = (value or "").strip().lower()
    if lowered.startswith("pt"):
        return "pt-BR"
    if lowered.startswith("en"):
        return "en"
    return None


def choose_language(request: Request, default: Language) -> Language:
    """Cookie, else the best of Accept-Language that we speak, else the operator's default."""
    if (chosen := _known(request.cookies.get(LANG_COOKIE))) is not None:
        return chosen
    offered: list[tuple[float, str]] = []
    for part in request.headers.get("accept-language", "").split(",")[:20]:
        tag, _, params = part.partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        offered.append((weight, tag))
    for _weight, tag in sorted(offered, key=lambda item: -item[0]):
        if (chosen := _known(tag)) is not None:
            return chosen
    return default

"""The dashboard's order pages (list, filters, revenue charts, one order, refunds), pt-BR and
English; part of the pages' catalog (`texts.pages.MESSAGES`)."""

from __future__ import annotations

__all__ = ["ORDER_ADMIN_MESSAGES"]

ORDER_ADMIN_MESSAGES: dict[str, tuple[str, str]] = {
    "orders.admin_title": ("Pedidos de créditos", "Credit orders"),
    "orders.filter": ("Filtrar", "Filter"),
    "orders.any": ("Todos", "Any"),
    "orders.since": ("Criados desde", "Created from"),
    "orders.until": ("Criados até (exclusive)", "Created until (exclusive)"),
    "orders.bad_date": (
        "Datas no formato AAAA-MM-DD; a data inválida foi ignorada.",
        "Dates as YYYY-MM-DD; the invalid date was ignored.",
    ),
    "orders.chart_days": ("Receita líquida por dia (30 dias)", "Net revenue per day (30 days)"),
    "orders.chart_packs": (
        "Receita líquida por pacote (30 dias)",
        "Net revenue per pack (30 days)",
    ),
    "orders.minor_units": ("{currency}, em centavos", "{currency}, in minor units"),
    "orders.no_revenue": ("Nenhuma venda nos últimos 30 dias.", "No sales in the last 30 days."),
    "col.provider": ("Meio", "Provider"),
    "col.refunded": ("Estornado", "Refunded"),
    "col.paid_at": ("Pago em", "Paid at"),
    "order.admin_detail": ("Pedido {order}", "Order {order}"),
    "order.events": ("Eventos do provedor", "Provider events"),
    "order.audit": ("Histórico (auditoria)", "History (audit log)"),
    "order.refund": ("Estornar", "Refund"),
    "order.refund_amount": ("Valor em centavos", "Amount in minor units"),
    "order.refund_hint": (
        "Vazio estorna tudo o que resta ({left}). O provedor é consultado; o saldo do usuário "
        "muda quando ele confirma o estorno.",
        "Empty refunds all that is left ({left}). The provider is asked; the user's balance "
        "changes when it confirms the refund.",
    ),
    "order.refund_button": ("Pedir o estorno ao provedor", "Ask the provider to refund"),
    "order.not_refundable": (
        "Só um pedido pago pode ser estornado.",
        "Only a paid order can be refunded.",
    ),
    "order.provider_down": (
        "O provedor de pagamento não respondeu ou recusou; nada mudou. Tente de novo.",
        "The payment provider did not answer or refused; nothing changed. Try again.",
    ),
    "done.refund": (
        "Estorno pedido ao provedor; o saldo muda quando ele confirmar.",
        "Refund asked of the provider; the balance changes when it confirms.",
    ),
    "col.action": ("Ação", "Action"),
    "col.actor": ("Quem", "Who"),
    "col.event": ("Evento", "Event"),
}

"""The purchase pages' words (packs, orders and their states), pt-BR and English; part of the
pages' catalog (`texts.pages.MESSAGES`)."""

from __future__ import annotations

__all__ = ["PURCHASE_MESSAGES"]

PURCHASE_MESSAGES: dict[str, tuple[str, str]] = {
    "buy.title": ("Comprar créditos", "Buy credits"),
    "buy.lead": (
        "Créditos somam-se ao seu saldo e são usados depois da franquia do plano.",
        "Credits add to your balance and are spent after your plan's allowance.",
    ),
    "buy.pack_tokens": ("{tokens} tokens", "{tokens} tokens"),
    "buy.popular": ("Mais popular", "Most popular"),
    "buy.expires": ("Válidos por {days} dias", "Valid for {days} days"),
    "buy.how": ("Como comprar", "How to buy"),
    "buy.offline": (
        "O pagamento online ainda não está disponível. Para receber créditos:",
        "Online payment is not available yet. To get credits:",
    ),
    "buy.contact_default": (
        "fale com o administrador do seu serviço de chat.",
        "contact the administrator of your chat service.",
    ),
    "buy.no_packs": (
        "Os pacotes de créditos ainda não foram definidos.",
        "No credit packs have been set up yet.",
    ),
    "buy.balance_now": ("Seu saldo agora: {tokens} tokens", "Your balance now: {tokens} tokens"),
    "buy.card": ("Pagar com cartão", "Pay by card"),
    "buy.pix": ("Pagar com Pix", "Pay with Pix"),
    "order.pix_text": (
        "Abra o app do seu banco e pague com o QR code ou com o código Pix copia e cola.",
        "Open your bank's app and pay with the QR code or the Pix copy-and-paste code.",
    ),
    "order.pix_qr": ("QR code do Pix", "Pix QR code"),
    "order.pix_code": ("Pix copia e cola", "Pix copy and paste"),
    "order.pix_copy": ("Copiar código Pix", "Copy the Pix code"),
    "order.pix_copied": ("Código copiado", "Code copied"),
    "order.pix_until": ("Válido até {when}", "Valid until {when}"),
    # Orders.
    "orders.title": ("Seus pedidos", "Your orders"),
    "col.order": ("Pedido", "Order"),
    "col.pack": ("Pacote", "Pack"),
    "order.title": ("Pedido de créditos", "Credit order"),
    "order.status.open": ("Iniciado", "Started"),
    "order.status.pending": ("Aguardando pagamento", "Awaiting payment"),
    "order.status.paid": ("Pago", "Paid"),
    "order.status.failed": ("Não aprovado", "Not approved"),
    "order.status.expired": ("Expirado", "Expired"),
    "order.status.refunded": ("Estornado", "Refunded"),
    "order.status.disputed": ("Contestado", "Disputed"),
    "order.pending_text": (
        "Assim que o provedor confirmar o pagamento, os tokens entram no seu saldo. Esta "
        "página se atualiza sozinha.",
        "As soon as the provider confirms the payment, the tokens join your balance. This page "
        "updates by itself.",
    ),
    "order.pay": ("Ir para o pagamento", "Go to the payment"),
    "order.cancelled_text": (
        "Você saiu da página de pagamento: nada foi cobrado. Pode voltar a ela ou escolher "
        "outro pacote.",
        "You left the payment page: nothing was charged. You can go back to it or pick another "
        "pack.",
    ),
    "order.paid_text": (
        "Pagamento confirmado: {tokens} tokens foram somados ao seu saldo. Você já pode voltar "
        "ao chat e continuar a conversa.",
        "Payment confirmed: {tokens} tokens were added to your balance. You can go back to the "
        "chat and carry on.",
    ),
    "order.back_to_chat": ("Voltar ao chat", "Back to the chat"),
    "order.failed_text": (
        "O pagamento não foi aprovado e nada foi cobrado. Tente de novo com outro meio.",
        "The payment was not approved and nothing was charged. Try again another way.",
    ),
    "order.expired_text": (
        "O prazo deste pagamento acabou e nada foi cobrado. Faça um novo pedido.",
        "This payment's time ran out and nothing was charged. Place a new order.",
    ),
    "order.refunded_text": (
        "Este pedido foi estornado; os tokens correspondentes saíram do seu saldo.",
        "This order was refunded; its tokens left your balance.",
    ),
    "order.disputed_text": (
        "O pagamento foi contestado junto ao emissor do cartão; os tokens do pedido saíram do "
        "seu saldo até a contestação ser resolvida.",
        "The payment was disputed with the card issuer; the order's tokens left your balance "
        "until the dispute is settled.",
    ),
    "order.refused_text": (
        "Não foi possível criar o pedido: escolha um pacote e uma forma de pagamento desta página.",
        "The order could not be made: pick a pack and a way to pay from this page.",
    ),
    "order.provider_down_text": (
        "O provedor de pagamento não respondeu. Nada foi cobrado; tente de novo em instantes.",
        "The payment provider did not answer. Nothing was charged; please try again shortly.",
    ),
}

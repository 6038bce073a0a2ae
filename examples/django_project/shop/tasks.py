"""Plain Django tasks: nothing here knows about taskq."""

from django.core import mail

from shop.models import Order

try:
    from django.tasks import task  # Django 6.0+
except ImportError:
    from django_tasks import task  # Django 5.2 with the backport


class CardDeclined(Exception):
    pass


@task(queue_name="emails", priority=10)
def send_confirmation(order_id: int) -> dict:
    order = Order.objects.get(id=order_id)
    if order.total_cents == 0:
        raise CardDeclined(f"nothing to charge for order {order_id}")
    mail.send_mail(
        "Your order", f"Order {order.id}: {order.total_cents / 100:.2f}", None, [order.email]
    )
    Order.objects.filter(id=order_id).update(confirmed=True)
    return {"order": order_id, "sent_to": order.email}

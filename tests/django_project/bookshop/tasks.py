"""The bookshop's conveyor app: its Redis is $CONVEYOR_REDIS_URL."""

from conveyor.app import Conveyor

app = Conveyor()


@app.task(queue="orders")
def confirm_order(order_id: int) -> str:
    from .models import Order

    confirmed = Order.objects.filter(id=order_id).update(status="confirmed")
    return f"confirmed {confirmed} order(s)"

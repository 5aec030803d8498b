"""``manage.py place_order CUSTOMER [--rollback] [--async]``: an order saved and
its confirmation enqueued in one transaction, as a view would; prints the
order's id and the jobs the queue holds inside the transaction and after it."""

import asyncio

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand
from django.db import transaction

from bookshop.models import Order
from bookshop.tasks import app, confirm_order
from conveyor.django import enqueue_on_commit


class Rollback(Exception):
    pass


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("customer")
        parser.add_argument("--rollback", action="store_true")
        parser.add_argument("--async", dest="use_async", action="store_true")

    def handle(self, customer, rollback, use_async, **options):
        if use_async:
            asyncio.run(self.place_async(customer, rollback))
        else:
            self.place(customer, rollback, confirm_order.enqueue_sync)
        self.stdout.write(f"after: {self.jobs()} job(s)")
        app.close_sync()

    def place(self, customer, rollback, enqueue):
        try:
            with transaction.atomic():
                order = Order.objects.create(customer=customer)
                self.stdout.write(f"order {order.id}")
                enqueue_on_commit(enqueue, order_id=order.id)
                self.stdout.write(f"in the transaction: {self.jobs()} job(s)")
                if rollback:
                    raise Rollback
        except Rollback:
            self.stdout.write("rolled back")

    async def place_async(self, customer, rollback):
        # As an async view does: the ORM in sync_to_async, the async enqueue.
        await sync_to_async(self.place)(customer, rollback, confirm_order.enqueue)
        await app.close()

    def jobs(self):
        return sum(app.sync_queue("orders").get_job_counts("waiting", "active").values())

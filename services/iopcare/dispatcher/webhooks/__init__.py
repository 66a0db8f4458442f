"""Webhooks, in one place: who is told about an alert change, what they are told, how it is signed and
delivered.

- :mod:`.policy` (pure): routing a change to subscriptions, coalescing, the notice's body, signing
  and verifying (Stripe's scheme), retry backoff, switching off an endpoint that keeps failing;
- :mod:`.store`: endpoints and deliveries in Postgres (migration 0009), the dispatcher's durable queue.

The dispatcher's consumer (``dispatcher/consumer.py``) turns alert events into deliveries and its
sender (``dispatcher/delivery.py``) POSTs them; ``iopcare webhooks`` manages endpoints.
"""

"""NATS JetStream adapters (ADR 12): the partitioned work feed between the profile processor and
the workers that step customers. nats-py is imported only here, when a bus URL names NATS.
"""

from safar.stores.nats.work import JetStreamWorkFeed

__all__ = ["JetStreamWorkFeed"]

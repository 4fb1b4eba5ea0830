"""The demo shop: synthetic customers and their events, for ``safar demo`` and the benchmarks."""

from safar.demo.shop import generate_shop, shop_batches, write_jsonl

__all__ = ["generate_shop", "shop_batches", "write_jsonl"]

"""ShopStream benchmarks: raw aiokafka, a bare Faust agent and the shop's own agent on Tansu.

Run ``python -m bench`` (``make bench``); results go to ``bench/results/``.
"""

__all__: list[str] = []

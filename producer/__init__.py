"""Client side of sluice: submit requests and batches, poll or subscribe to results.

    from producer import Client
    client = Client("redis://localhost:6379/0")
    batch = client.submit_file("requests.jsonl")
    client.wait(batch)
    for result in client.results(batch): ...
"""

from __future__ import annotations

from producer.client import Client

__all__ = ["Client"]

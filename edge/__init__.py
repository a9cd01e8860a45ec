"""The edge PoP: signed-URL check, cache key, serving from cache, forwarding misses to a shield."""

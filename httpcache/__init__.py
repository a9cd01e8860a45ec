"""What edge and shield share: RFC 9111 policy (pure), storage tiers, collapsing, tags, purges."""

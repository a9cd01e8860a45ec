-- Durable purge log: every purge gets a sequence number before it is published, so a cache
-- node that missed the pub/sub message catches up from here on (re)connect.
CREATE TABLE purge_log (
    seq         bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    tags        text[] NOT NULL DEFAULT '{}',
    urls        text[] NOT NULL DEFAULT '{}',
    prefixes    text[] NOT NULL DEFAULT '{}',
    soft        boolean NOT NULL DEFAULT false,
    requested_by text NOT NULL DEFAULT ''
);

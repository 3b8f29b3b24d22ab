-- 0006_payment_callback: the payment provider's approval callback (PAYMENT_MODE=provider).
--
-- The provider's callbacks are recorded here by the edge before it answers them (the
-- inbox, `payment_callbacks`: PostgreSQL holds an accepted callback whatever happens to
-- Redis), then applied by the worker, the only writer of orders and payments:
--
--   payment  PENDING -> AUTHORIZED -> CAPTURED        order PENDING -> CONFIRMED
--            PENDING | AUTHORIZED -> FAILED           order -> REJECTED PAYMENT_FAILED
--            PENDING | AUTHORIZED -> VOIDED (due_at)  order -> REJECTED PAYMENT_TIMEOUT
--
-- A PENDING order keeps its seats in sold_seats (nobody else can buy them while the
-- buyer pays); rejecting it deletes them. `projected` is false from a transition until
-- the worker wrote the order's Redis projection (an outbox: a crash in between projects
-- it again). With PAYMENT_MODE=instant none of this is used: orders are stored
-- CONFIRMED with a CAPTURED payment, as before.
--
-- The widened CHECKs are added NOT VALID (0007 validates them in a transaction of its
-- own, as 0002/0003 do); every existing row satisfies them anyway.

ALTER TABLE orders
    DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check
        CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')) NOT VALID;

ALTER TABLE payments
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check
        CHECK (status IN ('PENDING', 'AUTHORIZED', 'CAPTURED', 'FAILED', 'VOIDED')) NOT VALID,
    -- The provider's id of the payment, from its first callback (`codec::rules::provider_id`).
    ADD COLUMN provider_payment_id text CHECK (provider_payment_id ~ '^[!-~]{1,128}$'),
    -- When a PENDING or AUTHORIZED payment times out: the commit's acceptance + PAYMENT_TIMEOUT_MS.
    ADD COLUMN due_at timestamptz,
    -- The order's holds (`holdId` per seat, in seat order), for the projection that
    -- releases them when the order is rejected later.
    ADD COLUMN hold_ids text[],
    ADD COLUMN projected boolean NOT NULL DEFAULT true;

CREATE INDEX payments_due ON payments (due_at) WHERE status IN ('PENDING', 'AUTHORIZED');
CREATE INDEX payments_unprojected ON payments (order_id) WHERE NOT projected;
-- A callback names its payment by event and intent.
CREATE INDEX orders_intent ON orders (event_id, intent_id);

CREATE TABLE payment_callbacks (
    -- The provider's id of this callback: a retry of it inserts nothing.
    provider_event_id text        PRIMARY KEY CHECK (provider_event_id ~ '^[!-~]{1,128}$'),
    event_id          text        NOT NULL CHECK (event_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    intent_id         text        NOT NULL CHECK (intent_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    payment_id        text        NOT NULL CHECK (payment_id ~ '^[!-~]{1,128}$'),
    status            text        NOT NULL CHECK (status IN ('AUTHORIZED', 'CAPTURED', 'FAILED')),
    received_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when the worker applied it; `outcome` says what it did (APPLIED, IGNORED).
    applied_at        timestamptz,
    outcome           text
);

CREATE INDEX payment_callbacks_unapplied ON payment_callbacks (received_at) WHERE applied_at IS NULL;

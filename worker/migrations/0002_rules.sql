-- 0002_rules: the CHECKs say what `codec::rules` says, field by field, so that a value
-- the edge and the worker accept is a value PostgreSQL stores, and one they refuse it
-- refuses (worker/tests/stack/rules.rs compares both over generated values).
--
--   field            codec::rules       here
--   event id         event_id           events.event_id (0001)
--   section id       section_id         sections.section_id (0001)
--   seat id          seat_id            sold_seats.seat_id (0001), orders.seat_ids
--   seats of order   order_seats        orders.seat_ids: 1 to 100 distinct (none when REJECTED)
--   seats of section section_seats      sections.seats: 1 (0001) to 10,000,000
--   user id          user_id            orders.user_id
--   Idempotency-Key  idempotency_key    orders.idem
--   intent id        intent_id          orders.intent_id, payments.intent_id
--   currency         currency           events (0001), orders, payments .currency
--   amount, price    amount             bigint >= 0 (0001)
--
-- `[!-~]` is visible ASCII: PostgreSQL's regex ranges run by code point, whatever the
-- collation. `{1,255}` is the largest bound its regexes allow.
--
-- A REJECTED order may list no seats: one whose seat ids were not seat ids records
-- none (`INVALID_SEAT_ID`) rather than values these rules refuse.
--
-- Added NOT VALID: this transaction holds its ACCESS EXCLUSIVE locks only for the
-- catalog change, not for a scan of every order. 0003 validates the existing rows in a
-- transaction of its own, under a lock that lets commits go on.

-- A list of seat ids: one dimension, at most 100, distinct, each a seat id (the same
-- pattern as sold_seats.seat_id's CHECK). A CHECK may not hold a subquery; a function
-- may.
CREATE FUNCTION seat_ids_ok(ids text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_ndims(ids), 1) = 1
       AND cardinality(ids) <= 100
       AND (SELECT coalesce(bool_and(id IS NOT NULL
                                     AND id ~ '^[A-Za-z0-9_]{1,64}-[1-9][0-9]{0,8}$'), true)
                   AND count(DISTINCT id) = count(*)
              FROM unnest(ids) AS id)
$$;

ALTER TABLE orders
    ADD CONSTRAINT orders_idem_rule CHECK (idem ~ '^[!-~]{1,255}$') NOT VALID,
    ADD CONSTRAINT orders_user_id_rule CHECK (user_id ~ '^[!-~]{1,64}$') NOT VALID,
    ADD CONSTRAINT orders_intent_id_rule CHECK (intent_id ~ '^[A-Za-z0-9_-]{1,64}$') NOT VALID,
    ADD CONSTRAINT orders_currency_rule CHECK (currency ~ '^[A-Z]{3}$') NOT VALID,
    ADD CONSTRAINT orders_seat_ids_rule
        CHECK (seat_ids_ok(seat_ids) AND (cardinality(seat_ids) >= 1 OR status = 'REJECTED')) NOT VALID;

ALTER TABLE payments
    ADD CONSTRAINT payments_intent_id_rule CHECK (intent_id ~ '^[A-Za-z0-9_-]{1,64}$') NOT VALID,
    ADD CONSTRAINT payments_currency_rule CHECK (currency ~ '^[A-Z]{3}$') NOT VALID;

ALTER TABLE sections
    ADD CONSTRAINT sections_seats_rule CHECK (seats <= 10000000) NOT VALID;

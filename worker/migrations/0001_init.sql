-- 0001_init: the catalog (events, sections), orders, sold seats and payments.
--
-- Seats are not rows: seat `{section}-{n}` exists when 1 <= n <= sections.seats. A
-- seats table would hold nothing but that range (1,000,000 rows for a perf event,
-- seconds to write and again on every re-seed) while the sections row says it in one.
--
-- Exactly-once effects (DESIGN.md, worker): a redelivered commit finds its order by
-- (event_id, user_id, idem) and changes nothing; sold_seats' primary key
-- (event_id, seat_id) lets a seat be sold once, whatever Redis says, and the loser of a
-- race ends REJECTED.

CREATE TABLE events (
    event_id       text        PRIMARY KEY CHECK (event_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name           text        NOT NULL,
    currency       char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    open_at        timestamptz NOT NULL,
    -- New users admitted into the waiting room per second, from open_at.
    admission_rate integer     NOT NULL CHECK (admission_rate >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sections (
    event_id   text    NOT NULL REFERENCES events ON DELETE CASCADE,
    -- No '-': seat ids are `{section}-{n}`.
    section_id text    NOT NULL CHECK (section_id ~ '^[A-Za-z0-9_]{1,64}$'),
    -- Where the section comes in the catalog (0, 1, ...).
    position   integer NOT NULL CHECK (position >= 0),
    seats      integer NOT NULL CHECK (seats >= 1),
    -- Minor units of the event's currency.
    price      bigint  NOT NULL CHECK (price >= 0),
    PRIMARY KEY (event_id, section_id)
);

CREATE TABLE orders (
    order_id   bigserial   PRIMARY KEY,
    -- The commit's Idempotency-Key, as the buyer sent it: unique per event and buyer
    -- (the scope the edge gives it, `codec::keys::idempotency`), see below.
    idem       text        NOT NULL,
    user_id    text        NOT NULL,
    event_id   text        NOT NULL REFERENCES events,
    intent_id  text        NOT NULL,
    -- The seats asked for; those won are in sold_seats (none when REJECTED).
    seat_ids   text[]      NOT NULL,
    amount     bigint      NOT NULL CHECK (amount >= 0),
    currency   char(3)     NOT NULL,
    status     text        NOT NULL CHECK (status IN ('CONFIRMED', 'REJECTED')),
    -- Why a REJECTED order was rejected (e.g. SEAT_SOLD); null when CONFIRMED.
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'REJECTED') = (reason IS NOT NULL)),
    -- One order per commit, however often its message is delivered. Also the index that
    -- finds an order for a status look-up, and an event's orders for rebuild-redis.
    UNIQUE (event_id, user_id, idem)
);

CREATE TABLE sold_seats (
    event_id   text        NOT NULL,
    seat_id    text        NOT NULL CHECK (seat_id ~ '^[A-Za-z0-9_]{1,64}-[1-9][0-9]{0,8}$'),
    section_id text        NOT NULL GENERATED ALWAYS AS (split_part(seat_id, '-', 1)) STORED,
    n          integer     NOT NULL GENERATED ALWAYS AS (split_part(seat_id, '-', 2)::integer) STORED,
    order_id   bigint      NOT NULL REFERENCES orders,
    sold_at    timestamptz NOT NULL DEFAULT now(),
    -- The guarantee: a seat of an event is sold at most once.
    PRIMARY KEY (event_id, seat_id),
    FOREIGN KEY (event_id, section_id) REFERENCES sections
);

CREATE INDEX sold_seats_order_id ON sold_seats (order_id);

-- A sold seat must exist: n within its section's size. (The foreign key above checks
-- the section; this checks the number, with the same index look-up.) BEFORE triggers
-- run before generated columns are computed, hence split_part here.
CREATE FUNCTION sold_seat_exists() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sections s
                    WHERE s.event_id = NEW.event_id
                      AND s.section_id = split_part(NEW.seat_id, '-', 1)
                      AND split_part(NEW.seat_id, '-', 2)::integer <= s.seats) THEN
        RAISE EXCEPTION 'no seat % in event %', NEW.seat_id, NEW.event_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER sold_seat_exists BEFORE INSERT OR UPDATE ON sold_seats
    FOR EACH ROW EXECUTE FUNCTION sold_seat_exists();

CREATE TABLE payments (
    order_id   bigint      PRIMARY KEY REFERENCES orders,
    -- CAPTURED with a CONFIRMED order, VOIDED with a REJECTED one (PENDING exists only
    -- before the order does, in Redis).
    status     text        NOT NULL CHECK (status IN ('CAPTURED', 'VOIDED')),
    amount     bigint      NOT NULL CHECK (amount >= 0),
    currency   char(3)     NOT NULL,
    intent_id  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

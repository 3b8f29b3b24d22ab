-- 0004_amount_rule: amounts and prices up to 99,999,999,999,999 minor units, as
-- `codec::rules::amount` says: Redis's cjson, which encodes the commit message and the
-- intent's body, writes numbers with 14 significant digits, so a larger amount would
-- reach the worker as 1e+14. NOT VALID here, validated by 0005 in its own transaction
-- (the pattern of 0002 and 0003).

ALTER TABLE orders
    ADD CONSTRAINT orders_amount_rule CHECK (amount <= 99999999999999) NOT VALID;
ALTER TABLE payments
    ADD CONSTRAINT payments_amount_rule CHECK (amount <= 99999999999999) NOT VALID;
ALTER TABLE sections
    ADD CONSTRAINT sections_price_rule CHECK (price <= 99999999999999) NOT VALID;

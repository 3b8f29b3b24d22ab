-- 0003_rules_validate: checks the rows written before 0002 against its CHECKs.
--
-- Its own transaction (one per migration): VALIDATE CONSTRAINT scans under SHARE UPDATE
-- EXCLUSIVE, which lets the worker keep inserting orders meanwhile.
--
-- No path of the worker or the edge wrote rows these refuse (both checked the same
-- fields before, and sold_seats' CHECK refused the seat ids, A-01 or A-+1, that got
-- through), but a row written by hand may: then this fails with the constraint's name,
-- the worker does not start, and the rows are found with, for example,
--   SELECT order_id FROM orders WHERE NOT seat_ids_ok(seat_ids) OR user_id !~ '^[!-~]{1,64}$';
-- (the new rows are guarded by 0002 already).

ALTER TABLE orders VALIDATE CONSTRAINT orders_idem_rule;
ALTER TABLE orders VALIDATE CONSTRAINT orders_user_id_rule;
ALTER TABLE orders VALIDATE CONSTRAINT orders_intent_id_rule;
ALTER TABLE orders VALIDATE CONSTRAINT orders_currency_rule;
ALTER TABLE orders VALIDATE CONSTRAINT orders_seat_ids_rule;
ALTER TABLE payments VALIDATE CONSTRAINT payments_intent_id_rule;
ALTER TABLE payments VALIDATE CONSTRAINT payments_currency_rule;
ALTER TABLE sections VALIDATE CONSTRAINT sections_seats_rule;

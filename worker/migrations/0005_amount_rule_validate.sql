-- 0005_amount_rule_validate: checks the rows written before 0004 against its CHECKs,
-- in a transaction of its own (SHARE UPDATE EXCLUSIVE: commits go on meanwhile).

ALTER TABLE orders VALIDATE CONSTRAINT orders_amount_rule;
ALTER TABLE payments VALIDATE CONSTRAINT payments_amount_rule;
ALTER TABLE sections VALIDATE CONSTRAINT sections_price_rule;

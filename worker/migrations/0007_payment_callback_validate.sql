-- 0007_payment_callback_validate: validates 0006's widened status CHECKs, in a
-- transaction of its own, under a SHARE UPDATE EXCLUSIVE lock that lets commits go on.

ALTER TABLE orders VALIDATE CONSTRAINT orders_status_check;
ALTER TABLE payments VALIDATE CONSTRAINT payments_status_check;

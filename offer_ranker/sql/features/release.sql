-- Tables only the snapshot needed (it is written before the training frame): free their memory
-- for assemble.sql's joins and sort. A step of its own: the memory is released when the drops
-- commit, before the next statement runs.
DROP TABLE events;
DROP TABLE user_state;
DROP TABLE offer_before_day;
DROP TABLE snapshot_users;
DROP TABLE snapshot_offers;

-- Read-only analyst access to the touchpath database on a ClickHouse server, for `touchpath sql`
-- (TOUCHPATH_SQL_CLICKHOUSE_URL) and `touchpath serve`'s GET /v1/sql. Run as an admin, e.g.
--   clickhouse-client --multiquery --param_password='...' < deploy/clickhouse/analyst.sql
-- after replacing the password below (or use IDENTIFIED WITH sha256_hash BY '<hex>').
-- Change `touchpath` if your TOUCHPATH_CLICKHOUSE_URL names another database.

-- The limits mirror touchpath's own analyst session (TOUCHPATH_SQL_* settings); READONLY makes
-- them unchangeable by the query, and readonly = 1 refuses every write and every SET.
CREATE SETTINGS PROFILE IF NOT EXISTS touchpath_analyst SETTINGS
    readonly = 1 READONLY,
    max_execution_time = 30 READONLY,
    max_memory_usage = 1073741824 READONLY,
    max_result_rows = 100000 READONLY,
    max_result_bytes = 67108864 READONLY,
    result_overflow_mode = 'throw' READONLY,
    max_threads = 1 READONLY,
    max_concurrent_queries_for_user = 4 READONLY;

CREATE ROLE IF NOT EXISTS touchpath_analyst_role;
-- SELECT on the touchpath tables only: no other database, no table functions (they need the
-- CREATE TEMPORARY TABLE / URL / FILE / REMOTE / S3 source grants, which this role never gets),
-- no dictionaries, no SYSTEM, no INTROSPECTION.
GRANT SELECT ON touchpath.* TO touchpath_analyst_role;
GRANT SHOW TABLES, SHOW COLUMNS ON touchpath.* TO touchpath_analyst_role;

CREATE USER IF NOT EXISTS touchpath_analyst
    IDENTIFIED WITH sha256_password BY 'change-me-to-a-long-random-secret'
    DEFAULT ROLE touchpath_analyst_role
    DEFAULT DATABASE touchpath
    SETTINGS PROFILE touchpath_analyst;
GRANT touchpath_analyst_role TO touchpath_analyst;

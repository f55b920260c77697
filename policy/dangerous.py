"""Deny lists: functions with side effects outside the data, safeguard settings,
DuckDB file/network functions and the harmless DuckDB settings."""

from __future__ import annotations

# Functions that must be denied wherever they appear (matched on the function's
# own name, lower-cased, whatever schema qualifies it).
DANGEROUS_FUNCTIONS = frozenset(
    {
        # query strings run by the server
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
        "ts_stat", "ts_rewrite",
        # backend signalling / server control
        "pg_terminate_backend", "pg_cancel_backend", "pg_signal_backend",
        "pg_reload_conf", "pg_rotate_logfile", "pg_promote", "pg_switch_wal",
        "pg_switch_xlog", "pg_create_restore_point", "pg_start_backup",
        "pg_stop_backup", "pg_backup_start", "pg_backup_stop",
        "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_log_backend_memory_contexts",
        "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
        "pg_stat_reset_single_function_counters", "pg_stat_reset_slru",
        "pg_stat_reset_replication_slot", "pg_stat_reset_subscription_stats",
        "pg_stat_statements_reset", "pg_import_system_collations",
        "pg_truncate_visibility_map", "pg_drop_replication_slot",
        "pg_replication_slot_advance", "pg_logical_emit_message",
        # server files
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
        "pg_ls_logdir", "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir",
        "pg_ls_logicalsnapdir", "pg_ls_logicalmapdir", "pg_ls_replslotdir",
        "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync",
        "pg_logdir_ls", "pg_write_file",
        # large objects (server files and non-transactional storage)
        "lo_import", "lo_export", "lo_unlink", "lo_put", "lo_from_bytea",
        "lo_create", "lo_creat", "lo_truncate", "lo_truncate64", "lowrite",
        # DuckDB: files, network, other databases, secrets
        "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json",
        "read_json_auto", "read_json_objects", "read_json_objects_auto", "read_ndjson",
        "read_ndjson_auto", "read_ndjson_objects", "read_text", "read_blob", "glob",
        "sniff_csv", "parquet_metadata", "parquet_schema", "parquet_file_metadata",
        "parquet_kv_metadata", "parquet_bloom_probe", "read_xlsx", "st_read",
        "iceberg_scan", "iceberg_metadata", "iceberg_snapshots", "delta_scan",
        "sqlite_scan", "sqlite_attach", "postgres_scan", "postgres_scan_pushdown",
        "postgres_query", "postgres_execute", "postgres_attach", "mysql_query",
        "mysql_execute", "mysql_scan", "http_get", "http_post", "getenv",
        "duckdb_secrets", "which_secret", "query", "query_table", "load_extension",
        "install_extension", "checkpoint", "force_checkpoint", "export_database",
    }
)
DANGEROUS_FUNCTION_PREFIXES = ("dblink", "pg_logical_slot_", "pg_replication_origin_", "read_")
DANGEROUS_FUNCTION_INFIXES = ("replication_slot",)
DANGEROUS_FUNCTION_SUFFIXES = ("_scan",)  # DuckDB scanners: parquet_scan, sqlite_scan, postgres_scan, ...

# set_config() result for these names, and SET/RESET of them: dangerous.
SAFEGUARD_SETTINGS = frozenset(
    {
        "role", "session_authorization", "statement_timeout", "lock_timeout",
        "idle_in_transaction_session_timeout", "idle_session_timeout",
        "transaction_timeout", "default_transaction_read_only",
        "transaction_read_only", "session_replication_role", "row_security",
        "local_preload_libraries", "session_preload_libraries",
        "dynamic_library_path", "allow_system_table_mods", "ignore_system_indexes",
        "zero_damaged_pages", "ignore_checksum_failure", "jit_provider",
    }
)

# Settings that change how PostgreSQL writes values as text. The capture triggers keep changed rows as
# json written under the session's settings, and a rollback reads them back under sqlgate's own: floats
# written with extra_float_digits below 1 lose digits, an interval written in another IntervalStyle reads
# back as another interval, money written under another lc_monetary may not read back at all.
CAPTURE_FORMAT_SETTINGS = frozenset({"extra_float_digits", "intervalstyle", "lc_monetary"})


def capture_format_problem(name: str, value: str | None) -> str | None:
    """Why setting `name` to `value` (None: back to its default) would make checkpoints inexact, or None."""
    name = name.lower()
    if value is None or name not in CAPTURE_FORMAT_SETTINGS:
        return None
    if name == "extra_float_digits":
        try:
            if round(float(value)) >= 1:
                return None
        except ValueError:
            pass
        return "extra_float_digits below 1 drops float digits, and checkpoints would keep the rounded values"
    if name == "intervalstyle" and value.strip().lower() == "postgres":
        return None
    return f"{name} changes how values are written as text, and checkpoints would keep them inexactly"


# DuckDB settings an agent may change (everything else is instance-wide).
DUCKDB_SESSION_SETTINGS = frozenset(
    {
        "search_path", "schema", "timezone", "application_name", "datestyle",
        "calendar", "default_collation", "default_order", "default_null_order",
        "enable_progress_bar", "enable_progress_bar_print", "errors_as_json",
        "explain_output", "progress_bar_time", "max_expression_depth",
        "ordered_aggregate_threshold", "preserve_insertion_order",
        "integer_division", "late_materialization_max_rows", "default_block_size",
        "arrow_large_buffer_size", "binary_as_string", "pivot_limit",
        "null_order", "order_by_non_integer_literal", "scalar_subquery_error_on_multiple_rows",
    }
)

SEQUENCE_FUNCTIONS = frozenset({"nextval", "setval"})


def function_is_dangerous(name: str) -> bool:
    n = name.lower()
    if n in DANGEROUS_FUNCTIONS:
        return True
    if n.startswith(DANGEROUS_FUNCTION_PREFIXES):
        return True
    if n.endswith(DANGEROUS_FUNCTION_SUFFIXES):
        return True
    return any(i in n for i in DANGEROUS_FUNCTION_INFIXES)

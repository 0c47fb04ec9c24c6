//! One table, one run: snapshot or incremental. The only place that knows DAP, schema and database together.

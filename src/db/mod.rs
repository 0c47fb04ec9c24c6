//! The only owner of sqlx pools: control tables, migrations, loading, and the statements `sql` renders.

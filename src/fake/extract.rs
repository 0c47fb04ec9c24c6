//! The rows of one query result, taken at query time, and the records they make, object by
//! object, in the order every format writes them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::table::{Commit, RowSource, RowState};

/// The commit of a record whose commit index is out of range (never, by construction).
static NO_COMMIT: Commit = Commit {
    ts: DateTime::<Utc>::UNIX_EPOCH,
    text: String::new(),
};

/// The rows of one query result, taken consistently at query time and written out later.
#[derive(Debug)]
pub(super) struct Extract {
    pub source: RowSource,
    pub rows: Arc<Vec<RowState>>,
    pub commits: Arc<Vec<Commit>>,
    /// `None` for a snapshot (live rows); else rows last changed in this commit or later.
    pub from_commit: Option<u32>,
    pub rows_per_object: usize,
    /// At-least-once tables repeat some keys, an older version first.
    pub repeat_keys: bool,
    pub bad_lines_every: Option<u64>,
}

/// One record of a result.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record<'a> {
    pub key: &'a Map<String, Value>,
    /// `None` for a hard delete.
    pub value: Option<&'a Map<String, Value>>,
    /// The commit that last changed the row (`meta.ts`).
    pub commit: &'a Commit,
    /// `meta.action`: `U` or `D` in incremental results, `None` in snapshots.
    pub action: Option<&'static str>,
}

/// What an object holds, one after the other.
#[derive(Debug, Clone, Copy)]
pub(super) enum Item<'a> {
    Record(Record<'a>),
    /// The `n`th bad line of [`crate::fake::FakeTable::bad_lines_every`] (JSON Lines only).
    Bad(u64),
}

#[derive(Serialize)]
struct Line<'a> {
    key: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Map<String, Value>>,
    meta: Meta<'a>,
}

#[derive(Serialize)]
struct Meta<'a> {
    ts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
}

impl Extract {
    /// Whether this is an incremental result (records carry `meta.action`).
    pub(super) fn is_incremental(&self) -> bool {
        self.from_commit.is_some()
    }

    /// The table's latest schema, the one every tabular format lays its columns out by.
    pub(super) fn schema(&self) -> &Value {
        // Never empty: a table starts with one version and versions are only added.
        &self.source.schemas[self.source.schemas.len() - 1].schema
    }

    /// The selected rows, in key order, in groups of one object each (at least one group, maybe
    /// empty).
    pub(super) fn objects(&self) -> impl Iterator<Item = Vec<(u64, RowState)>> + '_ {
        let mut selected =
            self.rows
                .iter()
                .zip(0u64..)
                .filter(move |(row, _)| match self.from_commit {
                    None => row.live,
                    Some(first) => row.commit >= first,
                });
        let mut first = true;
        std::iter::from_fn(move || {
            let group: Vec<(u64, RowState)> = selected
                .by_ref()
                .take(self.rows_per_object)
                .map(|(&row, index)| (index, row))
                .collect();
            let wanted = !group.is_empty() || std::mem::take(&mut first);
            first = false;
            wanted.then_some(group)
        })
    }

    /// Hands the items of object `part` of `groups` (see [`Extract::objects`]) to `item`, in
    /// order.
    ///
    /// In a table that repeats keys, the older version of a repeated key comes first: in the
    /// same object for the first object's keys, and at the end of the object before for the
    /// others' keys, so that "last one wins" holds across objects as well as within one.
    pub(super) fn visit<E>(
        &self,
        groups: &[Vec<(u64, RowState)>],
        part: usize,
        mut item: impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let group = &groups[part];
        if part == 0 {
            self.visit_older_versions(group, &mut item)?;
        }
        for &(index, row) in group {
            self.visit_row(index, row, &mut item)?;
            if let Some(every) = self.bad_lines_every
                && index % every == 0
            {
                item(Item::Bad(index / every))?;
            }
        }
        if let Some(next) = groups.get(part + 1) {
            self.visit_older_versions(next, &mut item)?;
        }
        Ok(())
    }

    /// In a table that repeats keys, the older version of each repeated key of `group`.
    fn visit_older_versions<E>(
        &self,
        group: &[(u64, RowState)],
        item: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.repeat_keys {
            return Ok(());
        }
        for &(index, row) in group
            .iter()
            .filter(|&&(index, row)| row.live && self.source.repeats(index, row))
        {
            let older = RowState {
                version: row.version.saturating_sub(1),
                ..row
            };
            self.visit_row(index, older, item)?;
        }
        Ok(())
    }

    fn visit_row<E>(
        &self,
        index: u64,
        row: RowState,
        item: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let commit = self.commits.get(row.commit as usize).unwrap_or(&NO_COMMIT);
        let action = self.from_commit.map(|_| if row.live { "U" } else { "D" });
        let (key, value) = self.source.key_and_value(index, row);
        item(Item::Record(Record {
            key: &key,
            value: row.live.then_some(&value),
            commit,
            action,
        }))
    }

    /// Writes the JSON lines of object `part` of `groups` (see [`Extract::objects`]), each
    /// followed by `\n`, through `line`; bad lines included.
    pub(super) fn write_lines<E>(
        &self,
        groups: &[Vec<(u64, RowState)>],
        part: usize,
        mut line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut buffer = Vec::with_capacity(1024);
        self.visit(groups, part, |item| {
            match item {
                Item::Record(record) => render(&record, &mut buffer),
                Item::Bad(n) => self.render_bad(n, &mut buffer),
            }
            line(&buffer)
        })
    }

    /// A line no reader should accept, of one of five kinds in turn; its key is no row's key.
    /// Two carry a NUL character, which PostgreSQL text cannot hold: a raw one in a line that is
    /// not JSON, and an escaped one in the name of a property the schema does not define.
    fn render_bad(&self, n: u64, buffer: &mut Vec<u8>) {
        buffer.clear();
        let key_name = self
            .source
            .schemas
            .last()
            .and_then(|s| {
                s.schema
                    .pointer("/properties/key/properties")?
                    .as_object()?
                    .keys()
                    .next()
                    .cloned()
            })
            .unwrap_or_else(|| "id".into());
        let text = match n % 5 {
            0 => format!("{{\"key\": {{\"{key_name}\": {n}}}, \"value\": {{\"cut"),
            1 => format!(
                "{{\"key\": {{\"{key_name}\": [\"not\", \"a\", \"key\"]}}, \"value\": {{}}, \"meta\": {{\"ts\": \"2024-01-01T00:00:00Z\"}}}}"
            ),
            2 => format!(
                "{{\"key\": {{\"{key_name}\": {}}}, \"value\": {{\"dapsync_surprise_column\": 1}}, \"meta\": {{\"ts\": \"2024-01-01T00:00:00Z\"}}}}",
                4_000_000_000_000u64 + n
            ),
            3 => format!("{{\"key\": {{\"{key_name}\": {n}}}, \"value\": {{\"cut\0"),
            _ => format!(
                "{{\"key\": {{\"{key_name}\": {}}}, \"value\": {{\"dapsync_\\u0000surprise\": 1}}, \"meta\": {{\"ts\": \"2024-01-01T00:00:00Z\"}}}}",
                4_000_000_000_000u64 + n
            ),
        };
        buffer.extend_from_slice(text.as_bytes());
        buffer.push(b'\n');
    }
}

/// One record as a JSON line and its newline, in place of what `buffer` held.
fn render(record: &Record<'_>, buffer: &mut Vec<u8>) {
    buffer.clear();
    let line = Line {
        key: record.key,
        value: record.value,
        meta: Meta {
            ts: &record.commit.text,
            action: record.action,
        },
    };
    // Serializing maps of JSON values into a Vec cannot fail.
    serde_json::to_writer(&mut *buffer, &line).unwrap_or_default();
    buffer.push(b'\n');
}
